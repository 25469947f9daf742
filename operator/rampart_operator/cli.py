"""``rampart-operator``: run the operator, or render and validate resources offline.

    rampart-operator run [--namespace NS]... [--liveness URL] [--peering NAME]
    rampart-operator render -f FILE     the exact manifests the operator would apply
    rampart-operator validate -f FILE   every problem, with its field path
    rampart-operator crd                the CustomResourceDefinition
    rampart-operator api-reference      docs/api.md, from the same models as the CRD
    rampart-operator promote NAME [-n NS]   finish a canary rollout now
    rampart-operator abort NAME [-n NS]     roll a canary back now

``render`` and ``validate`` read every HardenedService in FILE (a YAML stream;
``-`` is standard input) and exit 1 when any is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import yaml

from rampart_common.sidecar_settings import load_yaml_all

from .api.reference import reference
from .crd import GROUP, KIND, VERSION, crd
from .render import render
from .settings import OperatorSettings, SettingsError
from .validation import validate

__all__ = ["main"]


# Exit statuses: 1 an invalid resource, 2 a usage error (a bad argument, file or
# environment variable), 3 the cluster cannot be reached or refuses the credentials.
INVALID, USAGE, UNREACHABLE = 1, 2, 3


def fail(message: str, status: int) -> NoReturn:
    """One line saying what is wrong and what to do: never a traceback for a user's mistake."""
    print(f"rampart-operator: {message}", file=sys.stderr)
    sys.exit(status)


def _documents(path: str) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as error:
        fail(f"{path}: cannot read it ({error.strerror})", USAGE)
    try:
        # YAML 1.2, as the sidecar reads its file: `retries: {on: ...}` is the key "on".
        docs = [d for d in load_yaml_all(text) if isinstance(d, dict)]
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        fail(f"{path}: not YAML{line}: {getattr(error, 'problem', error)}", USAGE)
    return [d for d in docs if d.get("kind") == KIND]


def _settings() -> OperatorSettings:
    try:
        return OperatorSettings.from_env()
    except SettingsError as error:
        fail(str(error), USAGE)


def _check(path: str) -> tuple[list[dict[str, Any]], bool]:
    resources = _documents(path)
    ok = True
    for resource in resources:
        name = resource.get("metadata", {}).get("name", "?")
        for problem in validate(resource):
            print(f"{path}: {KIND}/{name}: {problem}", file=sys.stderr)
            ok = False
    if not resources:
        print(f"{path}: no {KIND} found", file=sys.stderr)
        ok = False
    return resources, ok


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="rampart-operator",
        description="Run the Rampart operator, or render and validate HardenedServices offline.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="reconcile HardenedServices in the cluster")
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        help="watch only these namespaces (default: all, or RAMPART_NAMESPACES)",
    )
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8081/healthz",
        help="liveness endpoint URL ('' to turn off)",
    )
    run.add_argument(
        "--peering", default=None, help="KopfPeering name, for several replicas with one active"
    )
    for name, text in (
        ("render", "print the manifests the operator would apply"),
        ("validate", "report every problem with its field path"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("-f", "--file", required=True, help="YAML stream, or - for stdin")
    commands.add_parser("crd", help="print the CustomResourceDefinition")
    commands.add_parser("api-reference", help="print the API reference (docs/api.md)")
    for name, text in (
        ("promote", "skip a canary's remaining steps and promote it"),
        ("abort", "roll a canary back now"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("name", help="the HardenedService")
        sub.add_argument("-n", "--namespace", default=None, help="default: the kubeconfig's")
    args = parser.parse_args(argv)

    if args.command == "crd":
        print(yaml.safe_dump(crd(), sort_keys=False), end="")
    elif args.command == "api-reference":
        print(reference(), end="")
    elif args.command == "validate":
        resources, ok = _check(args.file)
        for resource in resources if ok else []:
            print(f"{KIND}/{resource['metadata']['name']}: valid")
        sys.exit(0 if ok else INVALID)
    elif args.command == "render":
        resources, ok = _check(args.file)
        if not ok:
            sys.exit(INVALID)
        settings = _settings()
        manifests = [m for r in resources for m in render(r, settings)]
        print(yaml.safe_dump_all(manifests, sort_keys=False), end="")
    elif args.command in ("promote", "abort"):
        sys.exit(asyncio.run(_annotate(args.command, args.name, args.namespace)))
    else:
        _run(args)


async def _annotate(command: str, name: str, namespace: str | None) -> int:
    """Set the annotation the operator acts on (and removes): GitOps keeps the spec."""
    import kopf

    from .kube import ApiError, KubeClient
    from .rollout import ABORT, PROMOTE

    info = _login(kopf)
    namespace = namespace or info.default_namespace or "default"
    key = PROMOTE if command == "promote" else ABORT
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    client = KubeClient(info)
    try:
        await client.merge_patch(
            f"{GROUP}/{VERSION}",
            KIND,
            namespace,
            name,
            {"metadata": {"annotations": {key: now}}},
        )
    except ApiError as error:
        if error.status == 0:  # no answer at all
            fail(f"cannot reach the API server at {info.server}: {error.message}", UNREACHABLE)
        if error.status in (401, 403):
            fail(f"the API server refused: {error.message}", UNREACHABLE)
        reason = "not found" if error.status == 404 else error.message
        print(f"rampart-operator: {KIND} {namespace}/{name}: {reason}", file=sys.stderr)
        return INVALID
    except aiohttp.ClientError as error:
        fail(f"cannot reach the API server at {info.server}: {error}", UNREACHABLE)
    finally:
        await client.close()
    print(f"{KIND} {namespace}/{name}: {key} set; the operator acts on it and removes it")
    return 0


def _login(kopf: Any) -> Any:
    """The credentials kopf would use (a service account, else the kubeconfig), or one
    line saying why there are none."""
    try:
        info = kopf.login_with_service_account(
            settings=kopf.OperatorSettings()
        ) or kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    except (OSError, ValueError, yaml.YAMLError, kopf.LoginError) as error:
        where = os.environ.get("KUBECONFIG", "~/.kube/config")
        fail(f"cannot use the kubeconfig {where}: {error}", USAGE)
    if info is None:
        fail("no credentials: not in a pod, and no kubeconfig (set KUBECONFIG)", USAGE)
    return info


async def _reachable(info: Any) -> None:
    """Ask the API server its version once, so that an unreachable cluster is one line."""
    from .kube import ApiError, KubeClient

    client = KubeClient(info)
    try:
        await asyncio.wait_for(client.version(), timeout=10)
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        fail(f"cannot reach the API server at {info.server}: {error or 'timed out'}", UNREACHABLE)
    except ApiError as error:
        verb = "cannot reach" if error.status == 0 else "was refused by"
        fail(f"{verb} the API server at {info.server}: {error.message}", UNREACHABLE)
    finally:
        await client.close()


def _run(args: argparse.Namespace) -> None:
    import kopf

    from .controller import Runtime
    from .handlers import register

    settings = _settings()
    # kopf's own lines (a handler per event) only when debugging: at a fleet's scale
    # they would drown what the operator says about what it changed and why.
    asyncio.run(_reachable(_login(kopf)))  # before logging is set up: one line if not
    debug = settings.log_level == "debug"
    kopf.configure(debug=debug, quiet=not debug)
    logging.getLogger("rampart").setLevel(settings.log_level.upper())
    namespaces = tuple(args.namespace) or settings.namespaces
    registry = kopf.OperatorRegistry()
    register(registry, Runtime(settings))
    kopf.run(
        registry=registry,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness or None,
        standalone=args.peering is None,
        peering_name=args.peering,
    )
