"""``python -m demo``: the tour, then everything stays up until Ctrl-C (see demo/tour.py)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from .narrator import Narrator
from .tour import NAME, NAMESPACE, STAGES, look_around, running


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/run-demo", description=__doc__)
    parser.add_argument(
        "--until",
        choices=STAGES,
        default=STAGES[-1],
        help="stop the tour after this stage and leave the rest to you (default: the whole tour)",
    )
    parser.add_argument(
        "--exit", action="store_true", help="stop and remove everything once the tour is over"
    )
    parser.add_argument("--workdir", type=Path, help="default: a new temporary directory")
    args = parser.parse_args()

    def stop(signum: int, _: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="rampart-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    narrator = Narrator()
    try:
        with running(workdir, narrator, args.until) as demo:
            look_around(demo, narrator)
            if args.until != STAGES[-1]:
                narrator.say(
                    f"next: kubectl -n {NAMESPACE} patch hsvc {NAME} --type=merge -p "
                    """'{"spec":{"canary":{"image":"ghcr.io/rampart-dev/demo:2.0.0"}}}'"""
                )
            # For scripts and tests: where the cluster is, once the tour is over.
            (workdir / "demo.json").write_text(
                json.dumps(
                    {
                        "kubeconfig": str(demo.cluster.kubeconfig),
                        "prometheus": demo.prometheus.url,
                        "alertmanager": demo.alertmanager.url,
                        "pids": demo.pids(),
                    }
                )
            )
            if not args.exit:
                threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        narrator.detail("stopped; everything the demo started is gone")
    sys.exit(0)


if __name__ == "__main__":
    main()
