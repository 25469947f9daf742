"""Compiles the sidecar's request path to C with mypyc; everything else stays Python.

The modules below are what every proxied request runs through. Compiled,
they take about a quarter less CPU per request (docs/benchmarks.md). They are
plain, type-checked Python all the same: ``RAMPART_PURE_PYTHON=1 pip install
.`` installs them as source (for a machine without a C compiler, or a
debugger), and they behave the same either way; the tests run the compiled build.

What compiling asks of these modules: no async generators, no class that
subclasses a built-in exception (errors.py holds those), and annotations that
are true at run time, since mypyc checks them. Their classes cannot be
monkeypatched or subclassed from Python, tests included.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

REQUEST_PATH = [
    "sidecar/rampart_sidecar/cache/entry.py",
    "sidecar/rampart_sidecar/cache/http.py",
    "sidecar/rampart_sidecar/cache/memory.py",
    "sidecar/rampart_sidecar/cache/policy.py",
    "sidecar/rampart_sidecar/flow.py",
    "sidecar/rampart_sidecar/headers.py",
    "sidecar/rampart_sidecar/messages.py",
    "sidecar/rampart_sidecar/metrics.py",
    "sidecar/rampart_sidecar/policies/breaker.py",
    "sidecar/rampart_sidecar/policies/concurrency.py",
    "sidecar/rampart_sidecar/policies/ratelimit.py",
    "sidecar/rampart_sidecar/policies/retry.py",
    "sidecar/rampart_sidecar/policies/timeout.py",
    "sidecar/rampart_sidecar/proxy.py",
    "sidecar/rampart_sidecar/server.py",
    "sidecar/rampart_sidecar/upstream.py",
]

pure_python = os.environ.get("RAMPART_PURE_PYTHON") == "1"

# An editable install builds in place: a module compiled by an earlier install
# would otherwise shadow its source after it left this list, or when asked for none.
keep = set() if pure_python else {path.removesuffix(".py") for path in REQUEST_PATH}
for stale in Path("sidecar").glob("**/*.so"):
    if str(stale).split(".", 1)[0] not in keep:
        stale.unlink()

ext_modules = []
if not pure_python:
    from mypyc.build import mypycify

    # Only these modules are analysed, whatever the build environment holds: the
    # rest of the project, and libraries, are typed Any here (``scripts/test``'s
    # mypy checks them all, with the project's settings).
    flags = ["--config-file=", "--follow-imports=skip", "--ignore-missing-imports"]
    ext_modules = mypycify([*flags, *REQUEST_PATH], opt_level="3", group_name="rampart_sidecar")

setup(ext_modules=ext_modules)
