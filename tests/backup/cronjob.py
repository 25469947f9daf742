"""Run a CronJob the operator rendered the way its container runs, on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rampart_operator.render.backup import DEST_DIR, KEY_DIR

VENV_BIN = Path(sys.executable).parent  # where the project's rampart-backup is


def run_job_container(
    job: dict[str, Any],
    secrets: dict[tuple[str, str], str],
    tmp: Path,
    local: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """A CronJob's container, run here: its args and env, secrets resolved; only
    the volume paths are this machine's, and ``local`` replaces what the pod
    reaches on its own loopback (a restore drill's throwaway server) by what
    stands for it here."""
    container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    key_dir = tmp / "key"
    if not key_dir.exists():
        key_dir.mkdir(parents=True)
        (key_dir / "key").write_text(os.urandom(32).hex())
    args = [
        arg.replace(KEY_DIR, str(key_dir)).replace(DEST_DIR, str(tmp / "backups"))
        for arg in container["args"]
    ]
    env = {}
    for variable in container.get("env") or []:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = secrets[ref["name"], ref["key"]]
    for pod_url, here in (local or {}).items():
        env = {name: value.replace(pod_url, here) for name, value in env.items()}
    return subprocess.run(
        [str(VENV_BIN / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
