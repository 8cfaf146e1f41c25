"""``csms serve [--config PATH]``: run the central system."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Coroutine
from typing import Any

from csms.config import ConfigError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="csms", description="chargehook OCPP 1.6J central system")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the OCPP endpoint, admin API and webhooks")
    serve_cmd.add_argument("--config", help="TOML settings file (see config.example.toml)")
    serve_cmd.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"csms: {exc}", file=sys.stderr)
        return 2

    from csms.app import serve  # after the config is known good

    try:
        _run(serve(settings))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"csms: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(main: Coroutine[Any, Any, None]) -> None:
    """uvloop where it is installed (Linux, macOS): a faster event loop for the sockets."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


if __name__ == "__main__":
    sys.exit(main())
