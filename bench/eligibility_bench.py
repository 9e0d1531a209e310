"""Benchmark of the eligibility rules engine: decisions per second over a mix of all schemes.

The mix is every case of every scheme's `cases.yaml` (eligible, ineligible and needs-review
applications of all nine schemes, each with its operator values), repeated and shuffled with a
fixed seed. Only `evaluate` is timed: no Kafka, no database. A benchmark, not a test.

    .venv/bin/python bench/eligibility_bench.py [--decisions 200000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.eligibility.domain import evaluate
from services.eligibility.parameters import OperatorParameters, ParameterStore
from tests.unit.eligibility.cases import all_cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=200_000, help="decisions to time (default 200000)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    base = ParameterStore.load()
    work = []
    for case in all_cases():
        store = base.with_operator(OperatorParameters.from_mapping(case.operator, source=case.source))
        work.append((case.application, store))
    rng = random.Random(args.seed)
    mix = [work[rng.randrange(len(work))] for _ in range(args.decisions)]

    for application, store in work:  # warm-up: parameters in force are memoised per (scheme, day)
        evaluate(application, store)

    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    for application, store in mix:
        outcomes[evaluate(application, store).outcome] += 1
    elapsed = time.perf_counter() - started

    schemes = Counter(application.scheme for application, _ in mix)
    print(f"eligibility: {args.decisions / elapsed:,.0f} decisions/s ({args.decisions:,} decisions in {elapsed:.2f} s)")
    print(f"  mix: {len(work)} distinct applications over {len(schemes)} schemes; outcomes {dict(outcomes)}")


if __name__ == "__main__":
    main()
