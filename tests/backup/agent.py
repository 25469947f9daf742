"""The backup agent's CLI as the CronJob runs it: a process with only the environment given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

AGENT = str(Path(sys.executable).parent / "rampart-backup")


def agent(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``rampart-backup ARGS`` without any RAMPART_BACKUP_ variable of the test run's own."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAMPART_BACKUP_")}
    return subprocess.run(
        [AGENT, *args],
        capture_output=True,
        text=True,
        timeout=180,  # a drill starts a database of its own
        env={**clean, **(env or {})},
    )


def backup(source: str, dest: Path, key_file: Path, *extra: str) -> dict[str, Any]:
    """One successful ``run``: what it printed about the backup it made."""
    done = agent(
        "run",
        "--dest",
        str(dest),
        "--key-file",
        str(key_file),
        *extra,
        env={"RAMPART_BACKUP_SOURCE": source},
    )
    assert done.returncode == 0, done.stderr
    made: dict[str, Any] = json.loads(done.stdout)
    return made
