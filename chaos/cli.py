"""`python -m chaos [--quick] [--only PART ...] [--no-docker] [--out DIR]` (`make chaos`): kill every part of
fleet under load and write bench/results/chaos/<UTC start>.json and its table, chaos.md (chaos-quick.md with
--quick). Exit 0 when every part was
measured (a row's numbers are findings, not verdicts)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from chaos.parts import BY_KEY
from chaos.run import FULL, OUT, QUICK, chaos, table_name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="chaos", description=__doc__)
    p.add_argument("--quick", action="store_true", help="one kill per part, lighter load (for development)")
    p.add_argument("--only", nargs="+", choices=[*BY_KEY, "container"], help="these parts only")
    p.add_argument("--no-docker", action="store_true", help="skip the compose container even with an engine")
    p.add_argument("--out", type=Path, default=OUT, help="the results folder (default bench/results/chaos)")
    args = p.parse_args(argv)

    def interrupted(signum, _frame):
        raise KeyboardInterrupt  # so the cluster is stopped on the way out

    signal.signal(signal.SIGTERM, interrupted)
    profile = QUICK if args.quick else FULL
    try:
        path = chaos(
            profile,
            args.out,
            args.only,
            not args.no_docker,
            log=lambda line: print(line, flush=True),
        )
    except KeyboardInterrupt:
        print("chaos: interrupted; the clusters were stopped", file=sys.stderr)
        return 130
    print((args.out / table_name(profile)).read_text())
    print(f"results: {path}")
    rows = json.loads(path.read_text())["parts"]
    return 1 if any("error" in row for row in rows) else 0
