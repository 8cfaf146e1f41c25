"""`csms-sim`: play one charger through a scenario (`run`), or many at once (`load`).

Whatever stops a run is said in one line on stderr (`csms-sim: ...`) with a non-zero exit
status: a refused connect, a refused id tag, a bad URL. The outcome of a run that worked
is one line on stdout, also with --quiet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys

from simulators.charger import Charger, ConnectFailed
from simulators.load import SCENARIOS as LOAD_SCENARIOS
from simulators.load import LoadError, LoadOptions, run_load
from simulators.model import ChargerModel, Identity
from simulators.net import check_url, is_loopback_url, ssl_context
from simulators.scenarios import (
    SCENARIOS,
    IdTagRefused,
    ScenarioError,
    ScenarioOptions,
    result_line,
)
from simulators.status import ErrorCode


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's default in `--help`, so nothing the simulator sends is a surprise
    (the id tag it presents, above all); options with no default say nothing more."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or not action.option_strings:
            return text
        if action.default in (None, False, argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


RUN_EXAMPLE = """\
example (the charger and the id tag registered through the admin API first):
  csms-sim run --url ws://127.0.0.1:9000/ocpp --id CP-1 --password correct-horse-battery \\
    --id-tag USER001 --scenario session --duration 5

exit status: 0 when the scenario ran; 1 when the CSMS refused (charger not registered,
wrong password, id tag refused, ...), said in one line on stderr; 2 for a bad URL.
"""

LOAD_EXAMPLE = """\
example (registers LOAD-00001.. through the admin API first):
  csms-sim load --url ws://127.0.0.1:9000/ocpp --chargers 10 --duration 5 \\
    --register-api http://127.0.0.1:8080/api/v1 --token "$TOKEN"

exit status: 0 when at least one charger connected; 1 when none did (why, on stderr);
2 for options it refuses (a bad URL, a non-loopback target, an unusable --register-api).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csms-sim", description="Simulated OCPP 1.6J chargers.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="play one charger through a scenario",
        description="Play one charger through a scenario against a CSMS.",
        epilog=RUN_EXAMPLE,
        formatter_class=_HelpFormatter,
    )
    run.add_argument(
        "--url",
        required=True,
        help="CSMS endpoint, e.g. ws://127.0.0.1:9000/ocpp (the id is appended unless the"
        " URL already ends in it)",
    )
    run.add_argument(
        "--id", required=True, dest="charger_id", help="charger id (last path segment)"
    )
    run.add_argument("--password", help="security profile 1/2 password (HTTP Basic auth)")
    run.add_argument("--ca", help="CA file to trust for a wss:// server certificate")
    run.add_argument(
        "--cert",
        help="security profile 3: PEM client certificate (subject CN = the charger id) for wss://",
    )
    run.add_argument("--key", help="its private key (PEM), unless in the --cert file")
    run.add_argument(
        "--scenario", required=True, choices=sorted(SCENARIOS), help="what the charger does"
    )
    run.add_argument("--connectors", type=int, default=1, help="connectors of the charger")
    run.add_argument("--connector", type=int, default=1, help="connector the scenario uses")
    run.add_argument(
        "--id-tag",
        default=ScenarioOptions().id_tag,
        help="id tag the driver presents; the CSMS must know it (POST /api/v1/id-tags)",
    )
    run.add_argument(
        "--duration",
        type=float,
        help="seconds (session: charging time, 30 when not given; idle/remote: forever)",
    )
    run.add_argument("--sample-interval", type=int, default=10, help="MeterValueSampleInterval")
    run.add_argument("--heartbeat-interval", type=float, help="override the CSMS's interval")
    run.add_argument(
        "--authorize-remote", action="store_true", help="AuthorizeRemoteTxRequests=true"
    )
    run.add_argument(
        "--error-code",
        default="GroundFailure",
        choices=[str(e) for e in ErrorCode],
        help="the fault of the faulted scenario",
        metavar="CODE",
    )
    run.add_argument("--max-power", type=float, default=22_080.0, help="W per connector")
    run.add_argument("--vendor", default="chargehook", help="chargePointVendor")
    run.add_argument("--model", default="SIM-AC22", help="chargePointModel")
    run.add_argument("--firmware", default="1.0.0", help="firmwareVersion")
    run.add_argument(
        "--call-timeout", type=float, default=30.0, help="seconds to wait for each answer"
    )
    run.add_argument(
        "--connect-attempts",
        type=int,
        default=5,
        help="connects to try (with back-off) before giving up; a refusal a retry cannot"
        " fix (not registered, wrong password, not an OCPP endpoint) ends it at once",
    )
    run.add_argument(
        "--retry-forever",
        action="store_true",
        help="keep trying to connect, whatever the answer, as a real charger does",
    )
    run.add_argument(
        "--quiet", action="store_true", help="no log line per message (the result line stays)"
    )

    load = sub.add_parser(
        "load",
        help="many chargers at once; prints a JSON summary",
        description="Many chargers at once against a loopback CSMS; prints a JSON summary.",
        epilog=LOAD_EXAMPLE,
        formatter_class=_HelpFormatter,
    )
    load.add_argument("--url", required=True, help="CSMS endpoint, e.g. ws://127.0.0.1:9000/ocpp")
    load.add_argument("--chargers", type=int, required=True, help="how many chargers")
    load.add_argument("--duration", type=float, required=True, help="seconds measured")
    load.add_argument(
        "--scenario", default="meter", choices=LOAD_SCENARIOS, help="what each charger does"
    )
    load.add_argument("--rate", type=float, help="open loop: total CALLs per second")
    load.add_argument(
        "--ramp", type=float, help="seconds to open all connections (default: min(10, duration/4))"
    )
    load.add_argument("--id-prefix", default="LOAD-", help="charger ids are PREFIX00001, ...")
    load.add_argument("--password", help="password of every charger (HTTP Basic auth)")
    load.add_argument("--ca", help="CA file to trust for a wss:// server certificate")
    load.add_argument(
        "--call-timeout", type=float, default=30.0, help="seconds to wait for each answer"
    )
    load.add_argument(
        "--grace", type=float, default=10.0, help="seconds after --duration to finish up"
    )
    load.add_argument("--heartbeat-interval", type=float, help="idle: seconds between heartbeats")
    load.add_argument("--allow-remote", action="store_true", help="allow a non-loopback CSMS")
    load.add_argument(
        "--register-api",
        metavar="URL",
        help="admin API URL as csms serve prints it (http://HOST:PORT/api/v1, the /api/v1 may"
        " be left out): registers the chargers first",
    )
    load.add_argument("--token", help="admin API bearer token for --register-api")
    load.add_argument("--seed", type=int, help="random seed, for a repeatable run")
    load.add_argument(
        "--quiet", action="store_true", help="no progress line every few seconds on stderr"
    )
    return parser


def _fail(line: str) -> None:
    """The one line a refused run ends with, on stderr."""
    print(f"csms-sim: {line}", file=sys.stderr, flush=True)


async def _run(args: argparse.Namespace) -> int:
    if problem := check_url(args.url):
        _fail(problem)
        return 2
    if args.connect_attempts < 1:
        _fail("--connect-attempts must be 1 or more")
        return 2
    if (args.cert or args.key) and not args.url.startswith("wss://"):
        _fail("--cert/--key are for wss:// (security profile 3)")
        return 2
    if args.key and not args.cert:
        _fail("--key needs --cert")
        return 2
    try:
        ssl_context(args.url, args.ca, args.cert, args.key)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        _fail(f"cannot use --ca/--cert/--key: {exc}")
        return 2
    model = ChargerModel(
        connectors=args.connectors,
        identity=Identity(
            vendor=args.vendor, model=args.model, serial=args.charger_id, firmware=args.firmware
        ),
        max_power_w=args.max_power,
    )
    model.config.set("MeterValueSampleInterval", str(args.sample_interval))
    if args.authorize_remote:
        model.config.set("AuthorizeRemoteTxRequests", "true")
    charger = Charger(
        args.url,
        args.charger_id,
        password=args.password,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        model=model,
        call_timeout=args.call_timeout,
        heartbeat_interval=args.heartbeat_interval,
        connect_attempts=None if args.retry_forever else args.connect_attempts,
    )
    options = ScenarioOptions(
        connector=args.connector,
        id_tag=args.id_tag,
        duration=args.duration,
        wait=args.call_timeout,
        error_code=ErrorCode(args.error_code),
    )
    failure: str | None = None  # said after the charger has stopped: the last line
    try:
        await charger.start(timeout=3600.0)
        await SCENARIOS[args.scenario](charger, options)
    except ConnectFailed as exc:
        failure = exc.problem.line()
    except IdTagRefused as exc:
        failure = f"{exc}; register it (POST /api/v1/id-tags) or pass --id-tag"
    except ScenarioError as exc:
        failure = str(exc)
    except TimeoutError:
        failure = "timed out waiting for the CSMS"
    finally:
        await charger.stop()
    if failure is not None:
        _fail(failure)
        return 1
    print(f"csms-sim: {result_line(charger, args.scenario)}", flush=True)
    return 0


async def _load(args: argparse.Namespace) -> int:
    ramp = args.ramp if args.ramp is not None else min(10.0, args.duration / 4)
    options = LoadOptions(
        url=args.url,
        chargers=args.chargers,
        duration=args.duration,
        scenario=args.scenario,
        rate=args.rate,
        ramp=ramp,
        id_prefix=args.id_prefix,
        password=args.password,
        ca=args.ca,
        call_timeout=args.call_timeout,
        grace=args.grace,
        heartbeat_interval=args.heartbeat_interval,
        seed=args.seed,
    )
    if not args.allow_remote:
        for url in filter(None, (args.url, args.register_api)):
            if not is_loopback_url(url):
                _fail(f"load: {url} is not a loopback address (use --allow-remote)")
                return 2
    progress = None if args.quiet else (lambda line: _fail(f"load: {line}"))
    try:
        result = await run_load(
            options, register_api=args.register_api, token=args.token, progress=progress
        )
    except LoadError as exc:
        _fail(f"load: {exc}")
        return 2
    print(json.dumps(result, indent=2), flush=True)
    if result["failure"]:
        _fail(f"load: {result['failure']}")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quiet = getattr(args, "quiet", False) or args.command == "load"
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    runner = _run if args.command == "run" else _load
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(runner(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
