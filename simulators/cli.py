"""`csms-sim`: play one charger through a scenario (`run`), or many at once (`load`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys

from simulators.charger import Charger
from simulators.load import SCENARIOS as LOAD_SCENARIOS
from simulators.load import LoadError, LoadOptions, run_load
from simulators.model import ChargerModel, Identity
from simulators.net import is_loopback_url
from simulators.scenarios import SCENARIOS, ScenarioError, ScenarioOptions
from simulators.status import ErrorCode


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="csms-sim", description="Simulated OCPP 1.6J chargers.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="play one charger through a scenario")
    run.add_argument("--url", required=True, help="CSMS endpoint, e.g. ws://127.0.0.1:9000/ocpp")
    run.add_argument(
        "--id", required=True, dest="charger_id", help="charger id (last path segment)"
    )
    run.add_argument("--password", help="security profile 1/2 password (HTTP Basic auth)")
    run.add_argument("--ca", help="CA file to trust for a wss:// server certificate")
    run.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    run.add_argument("--connectors", type=int, default=1)
    run.add_argument("--connector", type=int, default=1, help="connector the scenario uses")
    run.add_argument("--id-tag", default="SIM-TAG-0001")
    run.add_argument("--duration", type=float, help="seconds (session: charging time)")
    run.add_argument("--sample-interval", type=int, default=10, help="MeterValueSampleInterval")
    run.add_argument("--heartbeat-interval", type=float, help="override the CSMS's interval")
    run.add_argument(
        "--authorize-remote", action="store_true", help="AuthorizeRemoteTxRequests=true"
    )
    run.add_argument("--error-code", default="GroundFailure", choices=[str(e) for e in ErrorCode])
    run.add_argument("--max-power", type=float, default=22_080.0, help="W per connector")
    run.add_argument("--vendor", default="chargehook")
    run.add_argument("--model", default="SIM-AC22")
    run.add_argument("--firmware", default="1.0.0")
    run.add_argument("--call-timeout", type=float, default=30.0)
    run.add_argument("--quiet", action="store_true", help="no log line per message")

    load = sub.add_parser("load", help="many chargers at once; prints a JSON summary")
    load.add_argument("--url", required=True)
    load.add_argument("--chargers", type=int, required=True)
    load.add_argument("--duration", type=float, required=True)
    load.add_argument("--scenario", default="meter", choices=LOAD_SCENARIOS)
    load.add_argument("--rate", type=float, help="open loop: total CALLs per second")
    load.add_argument(
        "--ramp", type=float, help="seconds to open all connections (default: min(10, duration/4))"
    )
    load.add_argument("--id-prefix", default="LOAD-")
    load.add_argument("--password")
    load.add_argument("--ca")
    load.add_argument("--call-timeout", type=float, default=30.0)
    load.add_argument("--grace", type=float, default=10.0)
    load.add_argument("--heartbeat-interval", type=float, help="idle: seconds between heartbeats")
    load.add_argument("--allow-remote", action="store_true", help="allow a non-loopback CSMS")
    load.add_argument("--register-api", help="admin API base URL; registers the ids first")
    load.add_argument("--token", help="bearer token for --register-api")
    load.add_argument("--seed", type=int)
    return parser


async def _run(args: argparse.Namespace) -> int:
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
        model=model,
        call_timeout=args.call_timeout,
        heartbeat_interval=args.heartbeat_interval,
    )
    options = ScenarioOptions(
        connector=args.connector,
        id_tag=args.id_tag,
        duration=args.duration,
        wait=args.call_timeout,
        error_code=ErrorCode(args.error_code),
    )
    try:
        await charger.start(timeout=3600.0)
        await SCENARIOS[args.scenario](charger, options)
    except ScenarioError as exc:
        logging.getLogger("simulators").error("%s", exc)
        return 1
    except TimeoutError:
        logging.getLogger("simulators").error("timed out waiting for the CSMS")
        return 1
    finally:
        await charger.stop()
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
                print(
                    f"csms-sim load: {url} is not a loopback address (use --allow-remote)",
                    file=sys.stderr,
                )
                return 2
    try:
        result = await run_load(options, register_api=args.register_api, token=args.token)
    except LoadError as exc:
        print(f"csms-sim load: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
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
