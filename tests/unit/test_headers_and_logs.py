from __future__ import annotations

import json
import logging

from multidict import CIMultiDict

from rampart_sidecar.headers import end_to_end, request_id
from rampart_sidecar.logs import JsonFormatter, redact_headers


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
