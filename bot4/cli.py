"""The ``bot4`` command."""

from __future__ import annotations

import argparse
import sys

from bot4.errors import Bot4Error

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
    parser = argparse.ArgumentParser(prog="bot4", description="Shared circuit breakers for trading workers.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="several worker processes share one breaker through a failure and recovery")
    demo.add_argument("--workers", type=_positive_int, default=4, help="worker processes (default 4)")
    demo.add_argument("--duration", type=_positive_float, default=4.0, help="seconds to run (default 4)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``bot4`` command; return its exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from bot4.demo import DemoConfig, run_demo

            duration = args.duration
            return run_demo(
                DemoConfig(
                    workers=args.workers,
                    duration=duration,
                    outage_start=0.2 * duration,
                    outage_end=0.375 * duration,
                )
            )
    except Bot4Error as exc:
        print(f"bot4: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bot4: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
