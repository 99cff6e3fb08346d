"""The ``bot4`` command."""

from __future__ import annotations

import argparse
import os
import sys

from bot4.errors import Bot4Error, ConfigError

__all__ = ["main"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bot4", description="Circuit breakers, pre-trade risk and orders shared by trading worker processes."
    )
    from bot4 import __version__

    parser.add_argument("--version", action="version", version=f"bot4 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a multi-process paper-trading simulation: risk, routing, breakers, P&L")
    demo.add_argument("--workers", type=_positive_int, default=4, help="worker processes (default 4)")
    demo.add_argument("--duration", type=_positive_float, default=30.0, help="seconds to run (default 30)")
    demo.add_argument("--seed", type=int, default=7, help="seed of prices and strategies (default 7)")
    demo.add_argument("--json", action="store_true", help="print the report as JSON (no live view)")
    demo.add_argument(
        "--streams",
        action="store_true",
        help="run on streams: venues publish over WebSocket on loopback, feeds write the quote table",
    )
    demo.add_argument(
        "--journal",
        metavar="PATH",
        help="journal the desk to PATH (SQLite); a run rebuilds the desk a previous run left there",
    )
    demo.add_argument(
        "--serve",
        nargs="?",
        const=8464,
        type=int,
        metavar="PORT",
        help="open the dashboard of the run (bot4 serve) on 127.0.0.1:PORT (default 8464; 0: any free port)",
    )
    status = sub.add_parser("status", help="breakers, fuse, risk ledger, kill switch and workers of a live segment")
    status.add_argument("name", nargs="?", help="segment name (default: every bot4 segment on this host)")
    status.add_argument("--json", action="store_true", help="print JSON")
    feed = sub.add_parser("feed", help="run a venue's market stream into a live segment: quotes and marks")
    feed.add_argument("name", help="segment name")
    source = feed.add_mutually_exclusive_group(required=True)
    source.add_argument("--url", help="a Binance-format WebSocket base, e.g. wss://stream.binance.com:9443")
    source.add_argument("--adapter", help="instead: a stream adapter an installed plugin offers, by name")
    feed.add_argument("--venue", required=True, help="the venue's name in the quote table, e.g. binance")
    feed.add_argument(
        "--symbol",
        action="append",
        required=True,
        metavar="DESK=ID",
        help="e.g. BTC/USDT=BTCUSDT (repeat; with --adapter, DESK alone will do)",
    )
    feed.add_argument("--trades", action="store_true", help="also follow trades (last price)")
    feed.add_argument("--no-mark", action="store_true", help="do not mark the risk ledger (quotes only)")
    serve = sub.add_parser(
        "serve", help="a live web dashboard, a JSON API and Prometheus /metrics of a segment, with guarded control"
    )
    serve.add_argument("name", nargs="?", help="segment name (default: the one bot4 segment on this host)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this host only)")
    serve.add_argument("--port", type=int, default=8464, help="TCP port (default 8464; 0: any free port)")
    token = serve.add_mutually_exclusive_group()
    token.add_argument("--token-file", metavar="PATH", help="enable control with the token in PATH (mode 600)")
    token.add_argument(
        "--generate-token", action="store_true", help="enable control with a new token, printed with the address"
    )
    from bot4._cli.journal import add_parser as add_journal

    add_journal(sub)
    clean = sub.add_parser("clean", help="remove segments whose processes are all dead (never one in use)")
    clean.add_argument("names", nargs="*", help="segment names (default: every bot4 segment on this host)")
    clean.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    for verb, text in (("kill", "trip the kill switch: every process denies every order"), ("resume", "reset it")):
        cmd = sub.add_parser(verb, help=text)
        cmd.add_argument("name", help="segment name")
        cmd.add_argument("--reason", required=True, help="why (recorded with the state)")
        if verb == "kill":
            cmd.add_argument(
                "--flatten",
                action="store_true",
                help="flatten: every order manager cancels its orders and closes its positions "
                "(default: what the limits' flatten_on_kill says)",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``bot4`` command; return its exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            import json

            from bot4._cli.demo import SimulationConfig, render, run_simulation

            config = SimulationConfig(
                workers=args.workers,
                duration=args.duration,
                seed=args.seed,
                streams=args.streams,
                journal=args.journal,
                serve=args.serve,
            )
            if not args.json:
                print(
                    f"{config.workers} workers trade {', '.join(config.symbols)} for {config.duration:g}s over "
                    "venue-a and venue-b (cheaper; injected errors, down between "
                    f"{config.outage[0]:.0%} and {config.outage[1]:.0%} of the run)\n"
                )
            report = run_simulation(config, live=not args.json)
            print(json.dumps(report, indent=2, default=str) if args.json else render(report))
            if report["interrupted"]:
                print(f"bot4: demo interrupted ({report['interrupted']}): the report covers what ran", file=sys.stderr)
                return 130
            return 0 if report["exit_code"] == 0 and all(report["invariants"].values()) else 1
        if args.command == "feed":
            return _feed(args)
        if args.command == "status":
            return _status(args.name, args.json)
        if args.command == "serve":
            return _serve(args)
        if args.command == "clean":
            return _clean(args.names, args.dry_run)
        if args.command == "journal":
            from bot4._cli.journal import run as run_journal

            return run_journal(args)
        if args.command in ("kill", "resume"):
            from bot4.core import Core

            if not args.reason.strip():
                raise ConfigError("reason", "give a reason")
            with Core.attach(args.name, observer=True) as core:  # acts, takes no risk, keeps nothing alive
                switch = core.risk.kill_switch
                if args.command == "kill":  # first: nothing may delay the kill switch
                    switch.trip(args.reason, flatten=True if args.flatten else None)
                else:
                    switch.reset(args.reason)
                try:
                    core.risk.record_operator(f"{_operator()}: bot4 {args.command}: {args.reason}")
                except Bot4Error as exc:  # the state is changed (and journaled as such); who did it is not
                    print(f"bot4: the operator's record was not journaled: {exc}", file=sys.stderr)
                print(f"{args.name}: {core.risk.trading_state.name} ({switch.reason})")
            return 0
    except Bot4Error as exc:
        print(f"bot4: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bot4: interrupted", file=sys.stderr)
        return 130
    return 0


def _operator() -> str:
    """Who runs this command (for the journal)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _clean(names: list[str], dry_run: bool) -> int:
    from bot4.shm.lifecycle import find_segments, remove_if_stale

    removed = 0
    for name in names or find_segments():
        try:
            gone = remove_if_stale(name, dry_run=dry_run)
            why = "a process of it is alive"
        except Bot4Error as exc:
            gone, why = False, str(exc)
        if gone:
            removed += 1
            print(f"{'would remove' if dry_run else 'removed'} {name} (every process of it is dead)")
        elif names:  # the ones asked for by name are each accounted for
            print(f"kept {name}: {why}")
    if not removed and not names:
        print("nothing to clean")
    return 0


def _status(name: str | None, as_json: bool) -> int:
    import json

    from bot4._cli.status import find_segments, render, status_of

    if name is not None and not name.strip():
        raise ConfigError("name", "a segment name is empty (leave it out for every segment on this host)")
    names = [name] if name else find_segments()
    if not names:
        print("no bot4 segment on this host")
        return 0
    if name:
        status = status_of(name)
        print(json.dumps(status, indent=2, default=str) if as_json else render(status))
        return 0
    statuses, skipped = [], []
    for n in names:  # every segment on the host: one that cannot be read is reported, not fatal
        try:
            statuses.append(status_of(n))
        except Bot4Error as exc:
            skipped.append({"segment": n, "error": str(exc)})
    if as_json:
        print(json.dumps({"segments": statuses, "skipped": skipped}, indent=2, default=str))
    else:
        print("\n\n".join([render(s) for s in statuses] + [f"segment {x['segment']}: {x['error']}" for x in skipped]))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    try:
        from bot4._cli.dashboard.server import ServeConfig, Server, load_token, new_token, serve
    except ImportError as exc:
        raise ConfigError("serve", f"bot4 serve needs its extra: pip install 'bot4[serve]' ({exc})") from None
    from bot4.shm.lifecycle import find_segments

    name = args.name
    if name is None:
        names = find_segments()
        if len(names) != 1:
            raise ConfigError("name", f"name the segment to serve (found {', '.join(names) or 'none'})")
        name = names[0]
    token = load_token(args.token_file) if args.token_file else new_token() if args.generate_token else None
    config = ServeConfig(name=name, host=args.host, port=args.port, token=token)
    logging.basicConfig(level=logging.WARNING, format="bot4 serve: %(message)s")

    def ready(server: Server) -> None:
        where = server.url + (f"#token={token}" if args.generate_token else "")
        mode = "read-only (no control token)" if token is None else "control enabled with the token"
        print(f"{name}: dashboard on {where}  metrics on {server.url}metrics  ({mode}; Ctrl-C stops)", flush=True)

    return asyncio.run(serve(config, ready))


def _feed(args: argparse.Namespace) -> int:
    import asyncio

    from bot4.core import Core
    from bot4.streams.feed import Feed, FeedConfig

    symbols = {}
    for pair in args.symbol:
        desk, sep, venue_id = pair.partition("=")
        if args.adapter and not sep:
            venue_id = desk
        elif not sep or not desk or not venue_id:
            raise ConfigError("symbol", f"expected DESK=ID (e.g. BTC/USDT=BTCUSDT), got {pair!r}")
        symbols[desk] = venue_id
    kinds = ("bookTicker", "trade") if args.trades else ("bookTicker",)
    config = FeedConfig(
        url=args.url or "",
        adapter=args.adapter or "",
        venue=args.venue,
        symbols=symbols,
        kinds=kinds,
        mark=not args.no_mark,
    )
    with Core.attach(args.name) as core:
        feed = Feed(core, config)
        source = config.stream_url or f"stream adapter {config.adapter!r}"
        print(f"{args.name}: following {', '.join(symbols)} from {source} (Ctrl-C stops)", flush=True)
        try:
            asyncio.run(feed.run())
        finally:
            print(f"{args.name}: feed {feed.status()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
