"""What intake's validation of one submission costs, alone: CPU per submission over the samples.

    .venv/bin/python bench/intake_parse_bench.py [--rounds 5 --per-round 200]

Each round parses every sample of deploy/local/samples (valid ones and the invalid and malformed
ones) `--per-round` times with `parse_submission`, fingerprints the valid ones as intake does
(`body_fingerprint`), and prints the CPU time (process time, not wall clock) per submission. In the
pipeline bench intake was the busiest process, and validation most of its work. A benchmark: it
prints, it does not fail.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.intake.domain import Invalid, body_fingerprint, parse_submission  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=200)
    args = parser.parse_args()
    samples = [path.read_bytes() for path in sorted((ROOT / "deploy/local/samples").glob("*.json"))]
    valid = sum(not isinstance(parse_submission(raw), Invalid) for raw in samples)
    figures: list[float] = []
    for number in range(args.rounds):
        started = time.process_time()
        for _ in range(args.per_round):
            for raw in samples:
                result = parse_submission(raw)
                if not isinstance(result, Invalid):
                    body_fingerprint(result)
        per_submission = (time.process_time() - started) / (args.per_round * len(samples)) * 1e6
        figures.append(per_submission)
        print(f"round {number + 1}: {per_submission:,.0f} µs of CPU per submission")
    print(
        f"intake parse: {len(samples)} samples ({valid} valid), {args.rounds} rounds of {args.per_round} each:"
        f" median {statistics.median(figures):,.0f} µs of CPU per submission (min {min(figures):,.0f}, max {max(figures):,.0f})"
    )


if __name__ == "__main__":
    main()
