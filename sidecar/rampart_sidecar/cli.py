"""``rampart-sidecar``: flags override the file, environment variables stand in for flags.

    rampart-sidecar --config FILE --listen HOST:PORT --admin HOST:PORT --upstream URL

Each flag may also come from RAMPART_CONFIG, RAMPART_LISTEN, RAMPART_ADMIN and
RAMPART_UPSTREAM. An invalid file exits with status 2, naming field and reason.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rampart_common.sidecar_settings import load_settings

from .app import ListenError, run
from .errors import ConfigError
from .logs import configure_logging

__all__ = ["main"]

# flag -> (environment variable, dotted field in the settings file)
_FLAGS = {
    "listen": ("RAMPART_LISTEN", "listen"),
    "admin": ("RAMPART_ADMIN", "admin"),
    "upstream": ("RAMPART_UPSTREAM", "upstream.url"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="rampart-sidecar",
        description="Resilience proxy in front of one application container.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("RAMPART_CONFIG"),
        help="settings file (YAML); keys as in spec.sidecar [RAMPART_CONFIG]",
    )
    parser.add_argument("--listen", help="proxy listener HOST:PORT [RAMPART_LISTEN]")
    parser.add_argument("--admin", help="admin listener HOST:PORT [RAMPART_ADMIN]")
    parser.add_argument("--upstream", help="application URL [RAMPART_UPSTREAM]")
    parser.add_argument(
        "--check", action="store_true", help="validate the settings, print them resolved, and exit"
    )
    parser.add_argument(
        "--address-file",
        type=Path,
        default=os.environ.get("RAMPART_ADDRESS_FILE"),
        help="once listening, write the proxy and admin URLs there as JSON "
        "(with port 0, the ports chosen) [RAMPART_ADDRESS_FILE]",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    overrides = {}
    for flag, (env, dotted) in _FLAGS.items():
        value = getattr(args, flag) or os.environ.get(env)
        if value:
            overrides[dotted] = value
    try:
        settings = load_settings(args.config, overrides)
    except ConfigError as error:
        where = f" in {args.config}" if args.config else ""
        print(f"rampart-sidecar: invalid settings{where}:", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        sys.exit(2)
    if args.check:
        import yaml

        token_file = settings.cache.admin_token_file if settings.cache else None
        if token_file and not os.access(token_file, os.R_OK):
            # At run time the sidecar would start with cache busting off: say it now.
            print(
                f"rampart-sidecar: invalid settings: cache.adminTokenFile: {token_file} "
                "cannot be read (cache busting would be off)",
                file=sys.stderr,
            )
            sys.exit(2)

        print(yaml.safe_dump(settings.model_dump(by_alias=True, mode="json"), sort_keys=False))
        return
    configure_logging(settings.logging.level)
    try:
        run(settings, args.address_file)
    except ListenError as error:
        print(f"rampart-sidecar: {error}", file=sys.stderr)
        sys.exit(3)
