from __future__ import annotations

import enum
import io
import json
import logging

from multidict import CIMultiDict

from rampart_sidecar import headers, logs
from rampart_sidecar.headers import (
    FORWARD,
    FieldKinds,
    RequestHead,
    ResponseHead,
    end_to_end,
    request_id,
    request_kind,
    response_kind,
    valid_host,
)
from rampart_sidecar.logs import JsonFormatter, json_line, redact_headers


def test_end_to_end_drops_hop_by_hop_and_connection_named_fields():
    headers = CIMultiDict(
        [
            ("Connection", "close, X-Foo"),
            ("connection", "X-Bar"),
            ("X-Foo", "1"),
            ("X-Bar", "2"),
            ("Keep-Alive", "5"),
            ("Upgrade", "h2c"),
            ("TE", "trailers"),
            ("Accept", "a"),
            ("Accept", "b"),
            ("Transfer-Encoding", "chunked"),
        ]
    )
    kept = end_to_end(headers)
    assert list(kept.items()) == [("Accept", "a"), ("Accept", "b")]


def test_end_to_end_can_drop_more():
    assert "Content-Length" not in end_to_end(
        CIMultiDict({"Content-Length": "5", "A": "b"}), frozenset({"content-length"})
    )


def test_request_id_passes_sane_ids_and_replaces_the_rest():
    assert request_id("abc-123_x.y") == "abc-123_x.y"
    for hostile in (None, "", "a b", "x" * 200, "line\nbreak", "é"):
        generated = request_id(hostile)
        assert generated != hostile
        assert len(generated) == 32
    assert request_id(None) != request_id(None)


def test_redaction_covers_fixed_and_configured_headers_case_insensitively():
    redacted = redact_headers(
        {"authorization": "a", "Cookie": "c", "Set-Cookie": "s", "X-Api-Key": "k", "Accept": "x"},
        ["x-api-key"],
    )
    assert redacted == {
        "authorization": "[redacted]",
        "Cookie": "[redacted]",
        "Set-Cookie": "[redacted]",
        "X-Api-Key": "[redacted]",
        "Accept": "x",
    }


def test_json_formatter_keeps_extra_fields():
    record = logging.makeLogRecord(
        {
            "msg": "request %s",
            "args": ("done",),
            "levelname": "INFO",
            "name": "t",
            "request_id": "r1",
            "status": 200,
        }
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["msg"] == "request done"
    assert entry["request_id"] == "r1"
    assert entry["status"] == 200
    assert entry["ts"].endswith("Z")


def test_request_head_forwards_end_to_end_fields_as_they_came():
    head = RequestHead(
        [
            (b"Host", b"shop.example"),
            (b"Connection", b"keep-alive, X-Private-Hop"),
            (b"X-Private-Hop", b"secret"),
            (b"keep-alive", b"timeout=5"),
            (b"Accept", b"a"),
            (b"accept", b"b"),
            (b"Content-Length", b"12"),
            (b"X-Request-ID", b"first"),
            (b"X-Request-ID", b"second"),
            (b"X-Forwarded-For", b"10.0.0.1"),
            (b"x-forwarded-for", b"10.0.0.2"),
            (b"Expect", b"100-Continue"),
            (b"X-Odd", b"caf\xc3\xa9 \xff"),
        ]
    )
    # Order, case, duplicates and bytes kept; what the proxy sets itself left out.
    assert head.forwarded == (
        b"Host: shop.example\r\nAccept: a\r\naccept: b\r\n"
        b"Expect: 100-Continue\r\nX-Odd: caf\xc3\xa9 \xff\r\n"
    )
    assert head.content_length == 12
    assert not head.chunked
    assert head.expects_continue
    assert head.request_id == "first"
    assert head.forwarded_for == b"10.0.0.1, 10.0.0.2"
    assert head.host == "shop.example"
    assert not head.cache_fields
    assert not head.has_forwarded_proto
    assert head.fields[0] == (b"Host", b"shop.example")


def test_request_head_without_connection_named_fields_takes_the_one_pass():
    head = RequestHead([(b"Connection", b"close"), (b"Transfer-Encoding", b"chunked")])
    assert head.forwarded == b""
    assert head.chunked
    assert head.content_length is None
    assert head.request_id is None


def test_response_head_relays_end_to_end_fields_and_reads_the_framing():
    head = ResponseHead(
        [
            (b"Server", b"nginx"),
            (b"Connection", b"X-Hop"),
            (b"X-Hop", b"1"),
            (b"Content-Length", b"615"),
            (b"Content-Type", b"Text/Event-Stream; charset=utf-8"),
            (b"Date", b"Mon, 23 Nov 2026 19:00:00 GMT"),
            (b"X-Request-ID", b"the upstream's own"),
            (b"Set-Cookie", b"a=1"),
            (b"Set-Cookie", b"b=2"),
        ]
    )
    assert head.relayed == (
        b"Server: nginx\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\n"
        b"Date: Mon, 23 Nov 2026 19:00:00 GMT\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"
    )
    assert head.content_length == 615
    assert head.media_type == "text/event-stream"
    assert head.has_date
    assert not head.chunked


def test_response_head_without_length_or_type():
    head = ResponseHead([(b"Transfer-Encoding", b"gzip, chunked"), (b"Connection", b"keep-alive")])
    assert head.relayed == b""
    assert head.chunked
    assert head.content_length is None
    assert head.media_type == "application/octet-stream"
    assert not head.has_date


def test_a_field_is_read_the_same_whatever_the_case_of_its_name():
    # The usual spellings skip lower-casing: each must land where its lower case does.
    names = [b"Content-Length", b"CONTENT-LENGTH", b"content-length", b"cOnTeNt-LeNgTh"]
    names += [b"Host", b"HOST", b"X-Request-ID", b"x-request-id", b"X-REQUEST-ID", b"ETag"]
    names += [b"Cache-Control", b"cache-control", b"CACHE-CONTROL", b"Set-Cookie", b"SET-COOKIE"]
    names += [b"Transfer-Encoding", b"TRANSFER-ENCODING", b"Connection", b"connection"]
    names += [b"Expect", b"EXPECT", b"Authorization", b"AUTHORIZATION", b"Date", b"DATE"]
    for name in names:
        assert request_kind(name) == request_kind(name.lower()), name
        assert response_kind(name) == response_kind(name.lower()), name
    assert request_kind(b"CONTENT-LENGTH") != FORWARD
    assert response_kind(b"SERVER") == response_kind(b"Server") == FORWARD
    head = ResponseHead([(b"CONTENT-LENGTH", b"3"), (b"CONNECTION", b"keep-alive")])
    assert (head.content_length, head.relayed) == (3, b"")
    head = RequestHead([(b"HOST", b"a.test"), (b"CACHE-CONTROL", b"no-cache")])
    assert (head.host, head.cache_fields) == ("a.test", True)


# Everything each head reads (compiled classes keep no __slots__ to list them by).
_REQUEST_READS = (
    "authorization",
    "cache_fields",
    "chunked",
    "connection_fields",
    "content_length",
    "expects_continue",
    "fields",
    "forwarded",
    "forwarded_for",
    "has_forwarded_proto",
    "host",
    "host_fields",
    "host_valid",
    "request_id",
    "transfer_coding",
    "upgrade_field",
)
_RESPONSE_READS = (
    "cache_control",
    "cdn_cache_control",
    "chunked",
    "content_length",
    "content_type",
    "has_date",
    "relayed",
    "set_cookie",
    "transfer_coding",
)


def _read(head: RequestHead | ResponseHead) -> dict[str, object]:
    names = _REQUEST_READS if isinstance(head, RequestHead) else _RESPONSE_READS
    return {name: getattr(head, name) for name in names}


def test_a_connection_remembering_its_field_kinds_reads_each_head_as_a_fresh_one():
    # A head after head on one connection: the same names, then moved, renamed at the
    # same place (to one of another kind), recased, grown, shrunk, grown past the bound.
    usual = [(b"Host", b"a.test"), (b"User-Agent", b"wrk"), (b"Accept", b"*/*")]
    heads = [
        usual,
        usual,
        [(b"Accept", b"*/*"), (b"Host", b"a.test"), (b"User-Agent", b"wrk")],
        [(b"Host", b"a.test"), (b"Connection", b"close"), (b"Accept", b"*/*")],
        [(b"Host", b"a.test"), (b"Content-Length", b"3"), (b"Cache-Control", b"no-store")],
        [(b"HOST", b"a.test"), (b"content-length", b"3"), (b"Set-Cookie", b"a=1")],
        [(b"Host", b"a.test")],
        [(b"Host", b"a.test"), (b"Transfer-Encoding", b"chunked"), (b"Date", b"x")],
        [(b"X-Field-%d" % number, b"v") for number in range(40)] + [(b"Host", b"a.test")],
        [(b"X-Field-%d" % number, b"v") for number in range(40)] + [(b"Content-Length", b"5")],
        [(b"Host", b"b.test"), (b"X-Request-ID", b"r1"), (b"Content-Type", b"text/plain")],
        [],
        usual,
    ]
    requests, responses = FieldKinds(), FieldKinds()
    for fields in heads:
        assert _read(RequestHead(fields, requests)) == _read(RequestHead(fields)), fields
        assert _read(ResponseHead(fields, responses)) == _read(ResponseHead(fields)), fields
        for at, (name, _) in enumerate(fields):
            assert requests.request_kind(at, name) == request_kind(name)
            assert responses.response_kind(at, name) == response_kind(name)
        assert len(requests.names) == len(requests.kinds) <= headers._KINDS_REMEMBERED
    assert requests.names == [name for name, _ in usual] + requests.names[3:]


def test_hosts_found_valid_are_remembered_within_a_bound():
    headers._VALID_HOSTS.clear()
    try:
        assert valid_host(b"shop.example:8080")
        assert not valid_host(b"shop.example/v1")
        assert b"shop.example/v1" not in headers._VALID_HOSTS
        for number in range(2 * headers._VALID_HOSTS_KEPT):
            assert valid_host(b"host-%d.example" % number)
        assert len(headers._VALID_HOSTS) == headers._VALID_HOSTS_KEPT
        assert valid_host(b"shop.example:8080")  # remembered, or found again
        assert not valid_host(b"shop.example:8080 ")
    finally:
        headers._VALID_HOSTS.clear()  # the rest of the run starts with room to remember


def test_json_line_writes_what_json_dumps_would():
    class Level(enum.IntEnum):
        HIGH = 2

    entries = [
        {"ts": "2026-11-23T21:00:00.123Z", "level": "info", "msg": "request", "status": 200},
        {"path": '/caf\u00e9/"quoted"\\back\nline\t\x00', "raw": "\udcff\udcfe", "none": None},
        {"yes": True, "no": False, "ms": 0.1 + 0.2, "big": 10**30, "neg": -1.5e-7},
        {"inf": float("inf"), "nan": float("nan"), "level": Level.HIGH, "odd": object},
        {},
    ]
    for entry in entries:
        assert json_line(entry) == json.dumps(entry, default=str)


def test_access_lines_to_a_closed_stream_are_dropped_not_raised(monkeypatch):
    gone = io.StringIO()
    gone.close()
    monkeypatch.setattr(logs, "_access_stream", gone)
    access = logs.AccessLog()
    access.write({"path": "/", "status": 200}, None)  # no loop: written at once
    access.flush()

    kept = io.StringIO()
    monkeypatch.setattr(logs, "_access_stream", kept)
    access.write({"path": "/a", "status": 200}, None)
    line = json.loads(kept.getvalue())
    assert (line["logger"], line["msg"], line["path"]) == ("rampart.access", "request", "/a")
