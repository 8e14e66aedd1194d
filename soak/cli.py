"""`python -m soak [--minutes N] [--seed S] [--out DIR]` (`make soak`): exit 0 if every verdict holds."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from soak.run import REPO, soak


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="soak", description=__doc__)
    p.add_argument("--minutes", type=float, default=10.0, help="how long to churn (default 10)")
    p.add_argument("--seed", type=int, default=1, help="the schedule's seed (default 1)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak", help="the report's folder")
    args = p.parse_args(argv)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt  # so the cluster is stopped on the way out

    signal.signal(signal.SIGTERM, interrupted)
    try:
        report = soak(args.minutes, args.seed, args.out, log=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        print("soak: interrupted; the cluster was stopped", file=sys.stderr)
        return 130
    print(report.summary())
    for kind, path in report.files.items():
        print(f"  {kind}: {path}")
    return 0 if report.ok else 1
