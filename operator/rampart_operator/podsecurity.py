"""The Pod Security Standards, checked on a HardenedService's pod template as it will run.

#22: the operator creates Deployments with its own token, so whoever may create
a HardenedService must not get, through ``spec.template``, a pod that the
namespace's own Pod Security admission would have refused them: privileged,
host namespaces, hostPath, root. The template is checked after the operator's
hardening (``render.security``) fills what the user left unset, at the level
the operator's settings give (``RAMPART_POD_SECURITY``: ``restricted`` by
default, ``baseline``, or ``privileged`` for none), never a level the resource
chooses. The rules are those of kubernetes.io/docs/concepts/security/pod-security-standards
(v1.33), each refusal naming its field.
"""

from __future__ import annotations

from .api.fields import Object
from .render.security import harden_container, harden_pod
from .settings import LEVELS

__all__ = ["LEVELS", "pod_security_problems"]

_BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "KILL",
        "MKNOD",
        "NET_BIND_SERVICE",
        "SETFCAP",
        "SETGID",
        "SETPCAP",
        "SETUID",
        "SYS_CHROOT",
    }
)
_SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced",
        "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range",
        "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time",
        "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    }
)
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
_RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)

Problem = tuple[str, str]  # field path, why


def pod_security_problems(template: Object, path: str, level: str) -> list[Problem]:
    """Why ``template`` (a pod template at ``path``) would not meet ``level`` once hardened."""
    if level == "privileged":
        return []
    pod = harden_pod(template.get("spec") or {})
    spec_path = f"{path}.spec"
    problems = _baseline_pod(pod, spec_path)
    if level == "restricted":
        problems += _restricted_pod(pod, spec_path)
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for index, container in enumerate(pod.get(kind) or []):
            hardened = harden_container(container)
            where = f"{spec_path}.{kind}[{index}]"
            problems += _baseline_container(hardened, where)
            if level == "restricted":
                problems += _restricted_container(hardened, pod, where)
    return problems


def _baseline_pod(pod: Object, path: str) -> list[Problem]:
    problems: list[Problem] = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append((f"{path}.{field}", "host namespaces are not allowed"))
    for index, volume in enumerate(pod.get("volumes") or []):
        if "hostPath" in volume:
            problems.append(
                (f"{path}.volumes[{index}].hostPath", "hostPath volumes are not allowed")
            )
    context = pod.get("securityContext") or {}
    problems += _seccomp(context, f"{path}.securityContext")
    problems += _selinux(context, f"{path}.securityContext")
    problems += _apparmor(context, f"{path}.securityContext")
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        problems.append((f"{path}.securityContext.windowsOptions.hostProcess", "not allowed"))
    for index, sysctl in enumerate(context.get("sysctls") or []):
        if sysctl.get("name") not in _SAFE_SYSCTLS:
            problems.append(
                (
                    f"{path}.securityContext.sysctls[{index}]",
                    f"{sysctl.get('name')} is not a safe sysctl",
                )
            )
    return problems


def _restricted_pod(pod: Object, path: str) -> list[Problem]:
    problems: list[Problem] = []
    for index, volume in enumerate(pod.get("volumes") or []):
        kinds = set(volume) - {"name"}
        if kinds and not kinds <= _RESTRICTED_VOLUMES:
            what = ", ".join(sorted(kinds - _RESTRICTED_VOLUMES))
            problems.append((f"{path}.volumes[{index}]", f"{what} volumes are not allowed"))
    context = pod.get("securityContext") or {}
    if context.get("runAsNonRoot") is False:
        problems.append((f"{path}.securityContext.runAsNonRoot", "must not be false"))
    if context.get("runAsUser") == 0:
        problems.append((f"{path}.securityContext.runAsUser", "must not be 0 (root)"))
    return problems


def _baseline_container(container: Object, path: str) -> list[Problem]:
    problems: list[Problem] = []
    context = container.get("securityContext") or {}
    where = f"{path}.securityContext"
    if context.get("privileged"):
        problems.append((f"{where}.privileged", "privileged containers are not allowed"))
    if (context.get("windowsOptions") or {}).get("hostProcess"):
        problems.append((f"{where}.windowsOptions.hostProcess", "not allowed"))
    added = (context.get("capabilities") or {}).get("add") or []
    for capability in added:
        if capability not in _BASELINE_CAPABILITIES:
            problems.append((f"{where}.capabilities.add", f"{capability} may not be added"))
    if context.get("procMount", "Default") != "Default":
        problems.append((f"{where}.procMount", "must be Default"))
    for index, port in enumerate(container.get("ports") or []):
        if port.get("hostPort"):
            problems.append((f"{path}.ports[{index}].hostPort", "host ports are not allowed"))
    problems += _seccomp(context, where)
    problems += _selinux(context, where)
    problems += _apparmor(context, where)
    return problems


def _restricted_container(container: Object, pod: Object, path: str) -> list[Problem]:
    problems: list[Problem] = []
    context = container.get("securityContext") or {}
    pod_context = pod.get("securityContext") or {}
    where = f"{path}.securityContext"
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append((f"{where}.allowPrivilegeEscalation", "must be false"))
    non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
    if non_root is not True:
        problems.append((f"{where}.runAsNonRoot", "must be true"))
    if context.get("runAsUser") == 0:
        problems.append((f"{where}.runAsUser", "must not be 0 (root)"))
    capabilities = context.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append((f"{where}.capabilities.drop", "must include ALL"))
    for capability in capabilities.get("add") or []:
        if capability != "NET_BIND_SERVICE":
            problems.append(
                (
                    f"{where}.capabilities.add",
                    f"only NET_BIND_SERVICE may be added, not {capability}",
                )
            )
    seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        problems.append((f"{where}.seccompProfile.type", "must be RuntimeDefault or Localhost"))
    return problems


def _seccomp(context: Object, path: str) -> list[Problem]:
    if (context.get("seccompProfile") or {}).get("type") == "Unconfined":
        return [(f"{path}.seccompProfile.type", "Unconfined is not allowed")]
    return []


def _selinux(context: Object, path: str) -> list[Problem]:
    options = context.get("seLinuxOptions") or {}
    problems: list[Problem] = []
    if options.get("type", "") not in _SELINUX_TYPES:
        problems.append((f"{path}.seLinuxOptions.type", f"{options['type']} is not allowed"))
    for field in ("user", "role"):
        if options.get(field):
            problems.append((f"{path}.seLinuxOptions.{field}", "must not be set"))
    return problems


def _apparmor(context: Object, path: str) -> list[Problem]:
    profile = (context.get("appArmorProfile") or {}).get("type")
    if profile == "Unconfined":
        return [(f"{path}.appArmorProfile.type", "Unconfined is not allowed")]
    return []
