"""``csms``: run the central system (``serve``), look after its store (``token``, ``webhooks``),
forward its events to a receiver being developed (``listen``).

Every failure a user can cause ends in one ``csms: ...`` line on stderr that names the setting
or the remedy, and a non-zero exit status; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from importlib import metadata
from typing import Any

from csms.config import ConfigError, Settings, load_settings
from csms.logs import setup_logging
from storage import display_url

ENV_HELP = (
    "Every setting of the TOML file can be overridden by an environment variable"
    " CSMS_<SECTION>__<KEY>, e.g. CSMS_API__PORT=8081; a list takes a JSON array or a"
    " comma-separated list (CSMS_WEBHOOKS__RETRY_SCHEDULE=5s,30s,2m). config.example.toml"
    " shows every setting with its default."
)


def _version() -> str:
    try:
        return metadata.version("chargehook")
    except metadata.PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="csms",
        description="chargehook: an OCPP 1.6J central system with a built-in webhook emitter.",
        epilog=ENV_HELP,
    )
    parser.add_argument("--version", action="version", version=f"chargehook {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the OCPP endpoint, the admin API and the webhook delivery",
        description=(
            "Run the central system: the OCPP endpoint chargers connect to"
            " (ws://127.0.0.1:9000/ocpp/{chargerId} by default), the admin API"
            " (http://127.0.0.1:8080/api/v1) and the webhook delivery, on the store named by"
            " storage.url. At the first start without [api] tokens an admin token is"
            " generated and printed once."
        ),
        epilog=ENV_HELP,
    )
    _config_argument(serve)
    serve.add_argument(
        "--log-level",
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
        help="overrides log.level",
    )

    migrate = sub.add_parser(
        "migrate",
        help="apply the schema migrations to the configured store and exit",
        description=(
            "Apply the schema migrations the database of storage.url lacks, then exit."
            " `csms serve` does the same at start; on PostgreSQL an advisory lock makes"
            " several processes starting together migrate once."
        ),
        epilog=ENV_HELP,
    )
    _config_argument(migrate)

    token = sub.add_parser(
        "token",
        help="make, list and revoke admin API tokens in the configured store",
        description=(
            "Admin API tokens kept in the store (used when [api] tokens is empty). A running"
            " server accepts a new token, and refuses a revoked one, within a second."
        ),
        epilog=ENV_HELP,
    )
    token_sub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_sub.add_parser("create", help="make a token and print it (shown only now)")
    _config_argument(create)
    create.add_argument("--label", default="made with csms token create", help="what it is for")
    _config_argument(token_sub.add_parser("list", help="the stored tokens (never the tokens)"))
    revoke = token_sub.add_parser("revoke", help="forget a stored token")
    _config_argument(revoke)
    revoke.add_argument("token_id", metavar="ID", help="the token's id, as `csms token list`")

    webhooks = sub.add_parser("webhooks", help="repair the webhook store")
    webhooks_sub = webhooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")
    reset = webhooks_sub.add_parser(
        "reset-secrets",
        help="the secret key file is lost: make a new one and new endpoint secrets",
        description=(
            "Only for a secret key file lost for good: writes a new key file and gives every"
            " webhook endpoint a new secret, printed once each; every receiver then needs its"
            " new secret. Run it with the server stopped. Refused while the key file still"
            " opens every secret."
        ),
    )
    _config_argument(reset)

    listen = sub.add_parser(
        "listen",
        help="forward a CSMS's events to a local URL, signed like its webhooks",
        description=(
            "Follow GET /api/v1/events/stream of a CSMS (local or remote, over HTTP) and POST"
            " each event to --forward-to, signed per Standard Webhooks with a secret printed"
            " at start; one line per event. Resumes after a lost connection without a gap;"
            " Ctrl-C stops it. For developing a webhook receiver."
        ),
    )
    from csms.listen import add_arguments as listen_arguments

    listen_arguments(listen)
    return parser


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML settings file (see config.example.toml)")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "listen":  # a client of a CSMS over HTTP: no settings of its own
        from csms.listen import run as listen

        return listen(args)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"csms: {exc}", file=sys.stderr)
        return 2
    # The maintenance commands speak through their own lines; warnings only from the rest.
    level = getattr(args, "log_level", None) or (
        settings.log.level if args.command == "serve" else "warning"
    )
    setup_logging(level, settings.log.format)
    if args.command == "serve":
        return _serve(settings)
    if args.command == "migrate":
        return _run_tool(_migrate(settings))
    if args.command == "token":
        return _run_tool(_token(args, settings))
    return _run_tool(_reset_secrets(settings))


def _serve(settings: Settings) -> int:
    from csms.app import StartError, serve  # after the config is known good

    try:
        _run(serve(settings))
    except KeyboardInterrupt:
        pass
    except (StartError, OSError) as exc:
        print(f"csms: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


class ToolError(Exception):
    """A maintenance command cannot do what was asked; the message says why."""


def _run_tool(work: Coroutine[Any, Any, None]) -> int:
    from storage.migrations import NewerSchemaError

    try:
        asyncio.run(work)
    except (ToolError, NewerSchemaError, OSError) as exc:  # OSError: database unreachable
        print(f"csms: {exc}", file=sys.stderr)
        return 1
    return 0


async def _migrate(settings: Settings) -> None:
    from storage import migrate

    applied = await migrate(settings.storage.url)
    done = ", ".join(f"{v:04d}" for v in applied) if applied else "none, it was up to date"
    print(f"csms: migrated {display_url(settings.storage.url)}: applied {done}")


async def _with_store(settings: Settings, work: Callable[[Any], Awaitable[None]]) -> None:
    from storage import open_store

    store = await open_store(settings.storage.url)
    try:
        await work(store)
    finally:
        await store.close()


async def _token(args: argparse.Namespace, settings: Settings) -> None:
    from csms.tokens import create_token, revoke_token

    if settings.api.tokens:
        raise ToolError(
            "api.tokens is set in the configuration, so only those tokens are accepted and"
            " stored ones would not work; add yours there, or empty it to use stored tokens"
        )

    async def work(store: Any) -> None:
        if args.token_command == "create":
            made = await create_token(store, args.label)
            print(f"{made.token}")
            print(
                f"csms: made token {made.record.id} in {display_url(settings.storage.url)};"
                " it is shown only now",
                file=sys.stderr,
            )
        elif args.token_command == "list":
            tokens = await store.list_api_tokens()
            for t in tokens:
                print(f"{t.id}  {t.hint}...  {t.created_at}  {t.label}")
            if not tokens:
                print("csms: no stored tokens; `csms token create` makes one", file=sys.stderr)
        elif not await revoke_token(store, args.token_id):
            raise ToolError(f"no stored token has the id {args.token_id} (see csms token list)")
        else:
            print(f"csms: revoked {args.token_id}", file=sys.stderr)

    await _with_store(settings, work)


async def _reset_secrets(settings: Settings) -> None:
    from webhooks.rekey import RekeyRefused, reset_secrets

    async def work(store: Any) -> None:
        key_file = settings.webhooks.secret_key_file or store.default_key_file
        if key_file is None:
            raise ToolError("webhooks.secret_key_file: no key file to reset for this store")
        try:
            fresh = await reset_secrets(store, key_file)
        except RekeyRefused as exc:
            raise ToolError(str(exc)) from None
        for item in fresh:
            print(f"{item.endpoint_id}  {item.url}  {item.secret}")
        print(
            f"csms: wrote a new key file {key_file} and {len(fresh)} new secrets (shown only"
            " now); give each receiver its new secret",
            file=sys.stderr,
        )

    await _with_store(settings, work)


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
