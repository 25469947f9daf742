"""The admission webhooks' pure parts: certificates, injection decisions and patches."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
from cryptography import x509
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from rampart_operator.admission.certs import (
    CA_LIFETIME,
    PROMOTE_AFTER,
    SERVING_LIFETIME,
    Material,
    issue,
    plan,
    serving_names,
)
from rampart_operator.admission.injection import (
    APP_PORT,
    CONFIG,
    INJECT,
    INJECTED,
    decide,
    injection_patch,
)
from rampart_operator.render.sidecar import SIDECAR_NAME
from rampart_operator.settings import OperatorSettings

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
NAMES = serving_names("rampart-webhook", "rampart")


def certificate(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def trusted_by(material: Material, bundle: str, when: datetime.datetime = T0) -> bool:
    """Whether a TLS client trusting ``bundle`` accepts the serving certificate at ``when``."""
    store = Store(x509.load_pem_x509_certificates(bundle.encode()))
    verifier = PolicyBuilder().store(store).time(when).build_server_verifier(DNSName(NAMES[-1]))
    try:
        verifier.verify(certificate(material.cert), [])
    except VerificationError:
        return False
    return True


# --- certificates ----------------------------------------------------------------------


def test_a_new_certificate_names_the_service_and_is_signed_by_the_bundle() -> None:
    material = issue(NAMES, T0)
    leaf = certificate(material.cert)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        "rampart-webhook",
        "rampart-webhook.rampart",
        "rampart-webhook.rampart.svc",
    ]
    assert trusted_by(material, material.ca_bundle)
    (ca,) = x509.load_pem_x509_certificates(material.ca_bundle.encode())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.not_valid_after_utc - T0 <= SERVING_LIFETIME
    assert Material.from_secret(material.to_secret()) == material


def test_out_of_cluster_the_certificate_names_the_urls_host_as_an_ip_address() -> None:
    # The API server (Go) checks an address only against IP address SANs.
    names = serving_names("rampart-webhook", "rampart", "https://127.0.0.1:9443")
    material = issue(names, T0)
    san = certificate(material.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert "127.0.0.1" not in san.value.get_values_for_type(x509.DNSName)
    # Read back the same: no renewal at every check.
    assert plan(material, names, T0 + datetime.timedelta(days=1)) is None
    # A URL moved to another host is a new certificate.
    moved = serving_names("rampart-webhook", "rampart", "https://operator.dev.example:9443")
    renewed = plan(material, moved, T0 + datetime.timedelta(days=1))
    assert renewed is not None
    assert "operator.dev.example" in certificate(renewed.cert).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)


def served(material: Material) -> Material:
    """What a replica that loaded ``material`` serves, as a Material of its own."""
    return Material(material.ca_bundle, material.cert, material.key)


def test_a_certificate_is_kept_until_two_thirds_of_its_life_then_renewed_in_two_steps() -> None:
    material = issue(NAMES, T0)
    assert plan(material, NAMES, T0 + SERVING_LIFETIME * 0.6) is None
    when = T0 + SERVING_LIFETIME * 0.7
    staged = plan(material, NAMES, when)
    assert staged is not None
    # First the new CA joins the bundle; the current certificate is still served.
    assert staged.cert == material.cert
    assert staged.next_cert
    assert len(x509.load_pem_x509_certificates(staged.ca_bundle.encode())) == 2
    successor = Material(staged.ca_bundle, staged.next_cert, staged.next_key)
    assert trusted_by(successor, staged.ca_bundle, when)
    assert not trusted_by(successor, material.ca_bundle, when)  # why it must wait
    assert plan(staged, NAMES, when + PROMOTE_AFTER / 2) is None
    # At the first check PROMOTE_AFTER later, the new certificate is served.
    promoted = plan(staged, NAMES, when + PROMOTE_AFTER)
    assert promoted is not None
    assert (promoted.cert, promoted.key) == (staged.next_cert, staged.next_key)
    assert not promoted.next_cert
    assert promoted.ca_bundle == staged.ca_bundle  # nothing new for the API server
    assert plan(promoted, NAMES, when + PROMOTE_AFTER * 3) is None


def test_a_renewed_ca_is_trusted_beside_the_old_one_until_the_old_one_expires() -> None:
    material = issue(NAMES, T0)
    when = T0 + CA_LIFETIME * 0.67  # just past two thirds of the pair's life
    staged = plan(material, NAMES, when)
    assert staged is not None
    renewed = plan(staged, NAMES, when + PROMOTE_AFTER)
    assert renewed is not None
    bundle = x509.load_pem_x509_certificates(renewed.ca_bundle.encode())
    assert len(bundle) == 2
    # A replica that has not caught up yet still serves the old CA's certificate.
    assert trusted_by(material, renewed.ca_bundle, when + PROMOTE_AFTER)
    assert trusted_by(renewed, renewed.ca_bundle, when + PROMOTE_AFTER)
    assert not trusted_by(renewed, material.ca_bundle, when + PROMOTE_AFTER)
    # No renewal is due again right after; once the old CA has expired it leaves the bundle.
    assert plan(renewed, NAMES, when + datetime.timedelta(days=1)) is None
    later = plan(renewed, NAMES, T0 + CA_LIFETIME + datetime.timedelta(days=1))
    assert later is not None
    assert len(x509.load_pem_x509_certificates(later.ca_bundle.encode())) == 1
    assert later.cert == renewed.cert
    assert trusted_by(served(later), later.ca_bundle, T0 + CA_LIFETIME + datetime.timedelta(days=1))


def test_a_certificate_for_other_names_is_replaced_at_once() -> None:
    material = issue(NAMES, T0)
    other = serving_names("webhook", "ops")
    moved = plan(material, other, T0 + datetime.timedelta(days=1))
    assert moved is not None
    assert "webhook.ops.svc" in certificate(moved.cert).subject.rfc4514_string()
    assert not moved.next_cert
    # By a new CA (no CA key is kept to sign with), beside the old one.
    assert len(x509.load_pem_x509_certificates(moved.ca_bundle.encode())) == 2
    assert moved.ca_bundle.endswith(material.ca_bundle)


@pytest.mark.parametrize("broken", ["missing", "garbage"])
def test_an_unreadable_secret_counts_as_none(broken: str) -> None:
    data = issue(NAMES, T0).to_secret()
    if broken == "missing":
        del data["tls.key"]
    else:
        data["tls.crt"] = "-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n"
    assert Material.from_secret(data) is None


# --- injection decisions ------------------------------------------------------------------


def pod(
    labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-",
            "namespace": "shop",
            "labels": labels or {},
            **({"annotations": annotations} if annotations is not None else {}),
        },
        "spec": {
            "containers": [
                {"name": "web", "image": "ghcr.io/acme/web:1", "ports": [{"containerPort": 5000}]}
            ],
            **spec,
        },
    }


ASKED = {INJECT: "true"}


@pytest.mark.parametrize(
    ("case", "pod_labels", "pod_annotations", "namespace_meta", "namespace", "injected"),
    [
        ("pod label", ASKED, None, None, "shop", True),
        ("pod annotation", {}, ASKED, None, "shop", True),
        ("namespace label", {}, None, {"labels": ASKED}, "shop", True),
        ("namespace annotation", {}, None, {"annotations": ASKED}, "shop", True),
        ("nobody asks", {}, None, {"labels": {}}, "shop", False),
        ("pod opts out", {}, {INJECT: "false"}, {"labels": ASKED}, "shop", False),
        ("enabled, as Linkerd spells it", {}, {INJECT: "enabled"}, None, "shop", True),
        ("kube-system", ASKED, None, {"labels": ASKED}, "kube-system", False),
        ("the operator's namespace", ASKED, None, None, "rampart", False),
        ("namespace unknown", {}, None, None, "shop", False),
    ],
)
def test_who_gets_the_sidecar(
    case: str,
    pod_labels: dict[str, str],
    pod_annotations: dict[str, str] | None,
    namespace_meta: dict[str, Any] | None,
    namespace: str,
    injected: bool,
) -> None:
    decision = decide(
        pod(pod_labels, pod_annotations), namespace, namespace_meta, frozenset({"rampart"})
    )
    assert decision.inject is injected, (case, decision)


@pytest.mark.parametrize("where", ["containers", "initContainers"])
def test_a_pod_with_the_sidecar_is_left_alone(where: str) -> None:
    carrying = pod(ASKED)
    carrying["spec"].setdefault(where, []).append({"name": SIDECAR_NAME, "image": "x"})
    decision = decide(carrying, "shop", None)
    assert not decision.inject
    assert "already" in decision.reason


def test_host_network_pods_and_unknown_values_are_skipped_with_a_warning() -> None:
    host = decide(pod(ASKED, hostNetwork=True), "shop", None)
    assert not host.inject
    assert host.warning
    assert "hostNetwork" in host.warning
    unknown = decide(pod({INJECT: "yes-please"}), "shop", None)
    assert not unknown.inject
    assert unknown.warning
    assert "yes-please" in unknown.warning


# --- injection patches --------------------------------------------------------------------


def injected(original: dict[str, Any], settings: OperatorSettings) -> dict[str, Any]:
    patch = injection_patch(original, settings)
    result: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(original), patch)
    named = copy.deepcopy(result)
    named["metadata"]["name"] = "web-abcde"  # the API server fills generateName in later
    kubernetes_validate.validate(named, "1.33", strict=True)
    return result


def test_native_mode_puts_the_sidecar_first_among_init_containers() -> None:
    original = pod(ASKED, initContainers=[{"name": "migrate", "image": "ghcr.io/acme/migrate:1"}])
    result = injected(original, OperatorSettings(sidecar_mode="native"))
    first = result["spec"]["initContainers"][0]
    assert first["name"] == SIDECAR_NAME
    assert first["restartPolicy"] == "Always"
    assert result["spec"]["initContainers"][1]["name"] == "migrate"
    assert "--upstream" in first["args"]
    assert first["args"][first["args"].index("--upstream") + 1] == "http://127.0.0.1:5000"
    assert first["securityContext"]["runAsNonRoot"] is True
    assert result["metadata"]["annotations"][INJECTED] == OperatorSettings().sidecar_image
    assert result["spec"]["containers"] == original["spec"]["containers"]  # the app is untouched
    # Injecting again is a no-op: the second look sees the sidecar.
    assert not decide(result, "shop", None).inject


def test_container_mode_appends_the_sidecar_and_keeps_kubectl_on_the_app() -> None:
    result = injected(
        pod(ASKED, annotations={"team": "web"}), OperatorSettings(sidecar_mode="container")
    )
    assert [c["name"] for c in result["spec"]["containers"]] == ["web", SIDECAR_NAME]
    assert "restartPolicy" not in result["spec"]["containers"][1]
    annotations = result["metadata"]["annotations"]
    assert annotations["kubectl.kubernetes.io/default-container"] == "web"
    assert annotations["team"] == "web"


def test_a_config_map_named_by_annotation_is_mounted_and_read() -> None:
    original = pod(annotations={INJECT: "true", CONFIG: "web-sidecar", APP_PORT: "5001"})
    result = injected(original, OperatorSettings(sidecar_mode="native"))
    sidecar = result["spec"]["initContainers"][0]
    assert sidecar["args"][:3] == ["rampart-sidecar", "--config", "/etc/rampart/sidecar.yaml"]
    assert "http://127.0.0.1:5001" in sidecar["args"]
    assert result["spec"]["volumes"] == [
        {
            "name": "rampart-config",
            "configMap": {
                "name": "web-sidecar",
                "items": [{"key": "sidecar.yaml", "path": "sidecar.yaml"}],
            },
        }
    ]


@pytest.mark.parametrize(
    ("annotations", "complaint"),
    [
        ({APP_PORT: "8000"}, "must differ"),
        ({APP_PORT: "http"}, "not a port number"),
        ({"rampart.dev/proxy-port": "70000"}, "between 1 and 65535"),
        ({APP_PORT: "5001", "rampart.dev/proxy-port": "5000"}, "already a container's"),
    ],
)
def test_ports_that_cannot_work_are_refused_with_the_reason(
    annotations: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ValueError, match=complaint):
        injection_patch(pod(annotations={INJECT: "true", **annotations}), OperatorSettings())
