"""What one log line costs: CPU per line of a service's INFO line with its bound context, JSON.

    .venv/bin/python bench/logging_bench.py [--rounds 5 --lines 5000]

Rounds alternate between the services' configuration (shared.logging.configure_logging: structlog
renders and writes the line itself) and the same processors reached through the standard library
(a LogRecord, the handler and structlog's ProcessorFormatter, as our lines went before), so both are
measured in one run on a noisy machine. Lines go to os.devnull: the write to a real stderr (a pipe,
a file) costs the same in both ways and is not in these figures. A benchmark: it prints, it does
not fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from shared.logging import configure_logging  # noqa: E402


def through_stdlib() -> None:
    """Our lines handed to stdlib logging (the handler configure_logging installed renders them)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def per_line_us(lines: int) -> float:
    log = structlog.get_logger("services.eligibility.handlers")
    context = {
        "topic": "clustergrants.applications.received.v1",
        "batch": 12,
        "event_id": "0b0e6c52-2d55-4bb4-9d8c-1d1b8b1c1f00",
        "correlation_id": "5f0c3e9a-7f0c-4c8e-a7f7-3c6a3f7b5c11",
    }
    with structlog.contextvars.bound_contextvars(**context):
        started = time.process_time()
        for _ in range(lines):
            log.info("decision made", outcome="eligible", scheme="vlaio.spearhead-cluster", revision=1)
        return (time.process_time() - started) / lines * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lines", type=int, default=5000)
    args = parser.parse_args()
    out = sys.stdout
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (for the whole run)
    # A secret to scrub, as every service has one (DATABASE_URL's password).
    os.environ.setdefault("DATABASE_URL", "postgresql://bench:not-a-real-password@127.0.0.1/bench")
    figures: dict[str, list[float]] = {"services' configuration": [], "through stdlib logging": []}
    for _ in range(args.rounds):
        configure_logging("eligibility", "json")
        figures["services' configuration"].append(per_line_us(args.lines))
        configure_logging("eligibility", "json")
        through_stdlib()
        figures["through stdlib logging"].append(per_line_us(args.lines))
    for name, values in figures.items():
        print(
            f"{name:<26} {statistics.median(values):6.1f} µs of CPU per line (median of {args.rounds} rounds: "
            + ", ".join(f"{v:.0f}" for v in values)
            + ")",
            file=out,
        )


if __name__ == "__main__":
    main()
