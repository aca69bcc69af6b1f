"""``python -m benchmarks [--quick] [--broker URL] [--json FILE]``: run, print, write JSON.

Exit status: 0 when every case ran (whatever the numbers), 1 when a case crashed, 2 on a
usage error. Numbers never fail the run: targets are shown beside the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import structlog

from . import bench_codec
from ._common import Settings
from ._node import nats_server, rabbitmq
from ._stats import CaseResult, Progress, Series

__all__ = ("format_table", "main")

_HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure actorbus's messaging core against same-run baselines "
        "(bare msgspec, bare anyio, raw aiormq) and print the ratios.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="CI mode: fewer rounds and messages (< 3 min)"
    )
    parser.add_argument(
        "--broker",
        metavar="URL",
        default=os.environ.get("ACTORBUS_BENCH_BROKER"),
        help="RabbitMQ to use (amqp://...); default: start a throwaway node on 127.0.0.1 "
        "(env ACTORBUS_BENCH_BROKER)",
    )
    parser.add_argument(
        "--nats",
        metavar="URL",
        default=os.environ.get("ACTORBUS_BENCH_NATS"),
        help="nats-server with JetStream to use (nats://...); default: start a throwaway "
        "nats-server -js on 127.0.0.1 (env ACTORBUS_BENCH_NATS)",
    )
    parser.add_argument("--no-amqp", action="store_true", help="skip the RabbitMQ cases")
    parser.add_argument("--no-nats", action="store_true", help="skip the NATS cases")
    parser.add_argument(
        "--json",
        metavar="FILE",
        default="bench-results.json",
        help="where to write the results as JSON (default: %(default)s)",
    )
    parser.add_argument(
        "--loop",
        choices=("default", "uvloop", "asyncio", "both"),
        default="default",
        help="event loop(s): default = both in full mode, uvloop (if installed) in quick mode",
    )
    parser.add_argument("--rounds", type=int, help="measured rounds per variant (default 3/5)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every case's message count"
    )
    parser.add_argument(
        "--only",
        metavar="PREFIX",
        action="append",
        default=[],
        help="run only the cases whose name starts with PREFIX (repeatable): codec, actor, "
        "memory, amqp, peers, nats, store, flow, saga, request, embedded",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def _loops(choice: str, quick: bool) -> list[str]:
    if choice == "both":
        return ["uvloop", "asyncio"] if _HAS_UVLOOP else ["asyncio"]
    if choice == "uvloop" and not _HAS_UVLOOP:
        raise SystemExit("uvloop is not installed: pip install uvloop (or --loop asyncio)")
    if choice != "default":
        return [choice]
    if not _HAS_UVLOOP:
        return ["asyncio"]
    return ["uvloop"] if quick else ["uvloop", "asyncio"]


def _quiet_logging() -> None:
    # Like a production process at level "error": library log calls below it are no-ops.
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)


class _Run:
    """The rows gathered so far, and the crashes."""

    def __init__(self, only: Sequence[str]) -> None:
        self.results: list[CaseResult] = []
        self.crashed: list[str] = []
        self.only = tuple(only)

    def wanted(self, *prefixes: str) -> bool:
        if not self.only:
            return True
        return any(p.startswith(o) or o.startswith(p) for p in prefixes for o in self.only)

    def crash(self, case: str, loop: str, exc: BaseException) -> None:
        traceback.print_exception(exc, file=sys.stderr)
        self.crashed.append(f"{case} [{loop}]: {type(exc).__name__}: {exc}")
        self.results.append(CaseResult(case, loop, Series("actorbus"), skipped=f"crashed: {exc!r}"))


async def _async_cases(settings: Settings, loop: str, run: _Run) -> None:
    """Run the cases that need an event loop, on the running one."""
    from . import bench_embedded, bench_mailbox, bench_memory, bench_saga, bench_store

    suites: list[tuple[str, tuple[str, ...], Callable[[], Awaitable[list[CaseResult]]]]] = [
        ("actor", ("actor",), lambda: bench_mailbox.run(settings, loop)),
        ("memory", ("memory",), lambda: bench_memory.run(settings, loop)),
    ]
    if settings.amqp_url is not None:
        from . import bench_amqp

        suites.append(
            (
                "amqp",
                ("amqp", "peers"),
                lambda: bench_amqp.run(settings, loop, only=run.only),
            )
        )
    if settings.nats_url is not None:
        from . import bench_nats

        suites.append(("nats", ("nats",), lambda: bench_nats.run(settings, loop, only=run.only)))
    suites.append(
        ("store", ("store", "flow"), lambda: bench_store.run(settings, loop, only=run.only))
    )
    suites.append(
        ("saga", ("saga", "request"), lambda: bench_saga.run(settings, loop, only=run.only))
    )
    suites.append(("embedded", ("embedded",), lambda: bench_embedded.run(settings, loop)))
    for name, prefixes, suite in suites:
        if not run.wanted(*prefixes):
            continue
        try:
            rows = await suite()
        except Exception as exc:
            run.crash(name, loop, exc)
            continue
        run.results.extend(rows)


# ----------------------------------------------------------------------------- output


def _rate(series: Series, kind: str, value: float) -> str:
    if value != value:  # NaN
        return "-"
    if kind == "cost":
        return f"{1e9 / value:,.0f} ns"
    if value >= 100_000:
        return f"{value / 1000:,.0f}k/s"
    return f"{value:,.0f}/s"


def _range(series: Series, kind: str) -> str:
    low, high = series.low, series.high
    if kind == "cost":  # the slowest round is the largest cost
        low, high = high, low
    return f"{_rate(series, kind, low)}..{_rate(series, kind, high)}"


def _latency(series: Series | None) -> str:
    if series is None:
        return ""
    p50 = series.latency(50)
    p99 = series.latency(99)
    if p50 is None or p99 is None:
        return ""
    return f"{_ms(p50)} / {_ms(p99)}"


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 1:
        return f"{ms:.1f}"
    return f"{ms:.3f}"


def format_table(results: Sequence[CaseResult]) -> str:
    """Return the results as a Markdown table (readable as plain text too)."""
    header = (
        "| case | loop | subject | median | min..max | p50/p99 ms | baseline | baseline median "
        "| baseline p50/p99 ms | ratio | target | |"
    )
    lines = [header, "|" + "---|" * 12]
    for r in results:
        if r.skipped is not None:
            lines.append(
                f"| {r.case} | {r.loop} | {r.subject.name} | skipped: {r.skipped} |" + " |" * 8
            )
            continue
        s, b = r.subject, r.baseline
        arrow = "↑" if r.kind == "throughput" else "↓"
        ratio = r.ratio
        ratio_text = f"{ratio:.2f}x {arrow}" if ratio is not None else ""
        target = ""
        if r.target is not None:
            target = f"{'≥' if r.kind == 'throughput' else '≤'} {r.target:g}x"
        met = {True: "ok", False: "below", None: ""}[r.met]
        lines.append(
            f"| {r.case} | {r.loop} | {s.name} | {_rate(s, r.kind, s.median)} "
            f"| {_range(s, r.kind)} | {_latency(s)} "
            f"| {b.name if b else ''} | {_rate(b, r.kind, b.median) if b else ''} "
            f"| {_latency(b)} | {ratio_text} | {target} | {met} |"
        )
    return "\n".join(lines)


def _meta(
    args: argparse.Namespace, settings: Settings, loops: list[str], how: str
) -> dict[str, Any]:
    import aiormq
    import msgspec

    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": settings.quick,
        "rounds": settings.rounds,
        "scale": settings.scale,
        "loops": loops,
        "prefetch": settings.prefetch,
        "confirm_window": settings.confirm_window,
        "broker": how,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": {
            "anyio": anyio.__version__ if hasattr(anyio, "__version__") else None,
            "aiormq": getattr(aiormq, "__version__", None),
            "msgspec": msgspec.__version__,
            "nats-py": _version("nats-py"),
        },
    }


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; return the exit status (0, or 1 if a case crashed)."""
    args = _parser().parse_args(argv)
    _quiet_logging()
    progress = Progress(quiet=args.quiet)
    rounds = args.rounds or (3 if args.quick else 5)
    settings = Settings(
        quick=args.quick, rounds=rounds, scale=args.scale, amqp_url=None, progress=progress
    )
    loops = _loops(args.loop, args.quick)
    run = _Run(args.only)
    notes: list[str] = []
    if args.quick and len(loops) == 1 and _HAS_UVLOOP:
        notes.append(
            "quick mode measures on uvloop only; a full run (`python -m benchmarks`) "
            "reports uvloop and the default asyncio loop"
        )
    elif not _HAS_UVLOOP:
        notes.append("uvloop is not installed: default asyncio loop only (pip install uvloop)")

    started = time.perf_counter()
    if run.wanted("codec"):
        try:
            run.results.extend(bench_codec.run(settings))
        except Exception as exc:
            run.crash("codec", "-", exc)

    need_amqp = not args.no_amqp and run.wanted(
        "amqp", "peers", "store", "flow", "saga", "request", "embedded"
    )
    how = "not used"
    nats_how = "not used"
    with contextlib.ExitStack() as stack:
        if need_amqp:
            settings.amqp_url, how = stack.enter_context(rabbitmq(args.broker, progress))
            if settings.amqp_url is None:
                notes.append(how)
        if not args.no_nats and run.wanted("nats"):
            settings.nats_url, nats_how = stack.enter_context(nats_server(args.nats, progress))
            if settings.nats_url is None:
                notes.append(nats_how)
        for loop in loops:
            progress(f"event loop: {loop}")
            anyio.run(
                _async_cases,
                settings,
                loop,
                run,
                backend="asyncio",
                backend_options={"use_uvloop": loop == "uvloop"},
            )
    elapsed = time.perf_counter() - started

    table = format_table(run.results)
    print(table)
    for note in notes:
        print(f"\nNote: {note}")
    print(
        f"\n{len(run.results)} rows in {elapsed:.0f} s; ratios are actorbus ÷ baseline "
        "(↑ higher is better, ↓ lower is better)."
    )
    doc = {
        "meta": _meta(args, settings, loops, how)
        | {"nats": nats_how, "seconds": elapsed, "notes": notes},
        "results": [r.to_json() for r in run.results],
        "crashed": run.crashed,
    }
    Path(args.json).write_text(json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n")
    progress(f"wrote {args.json}")
    if run.crashed:
        print("\nCrashed:\n  " + "\n  ".join(run.crashed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
