"""`python -m bench`: run the benchmark sections, each into its own stamped results file; results.md from them.

Sections: throughput (fleet vs the tutorial layout, gunicorn, granian alone and behind nginx, uWSGI alone
and the nginx ceiling; the proxy hop in pairs and by CPU time per request), tuning (fleet as shipped vs
one change at a time), hotadd (file drop to routed, vs the Emperor alone; removal; where the time goes),
reload (keep-alive clients across 18 add/touch/rm changes; touch, rolling reload, kill -9 under load, 1
and 2 backends), scale (1..50 vassals), https (HTTPS vs HTTP, keep-alive and new connections: the
handshake), static (a file from nginx's [fleet] static vs through a vassal). The section runners are in
bench/sections.py.
Each section run writes its own stamped, dated file, bench/results/<section>/<ended, UTC>.json (harness/evidence.py),
and results.md is generated again from the latest file of each section. --quick is a smoke run into
bench/results/quick/.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import machine, report
from bench.sections import FULL, QUICK, RUNNERS, log
from bench.servers import tool
from harness import evidence
from harness.cluster import fleet_available

SECTIONS = ("throughput", "tuning", "hotadd", "reload", "scale", "https", "static")
ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections of: {', '.join(SECTIONS)}"
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run (results in bench/results/quick/)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the fleet tree to benchmark (default: this checkout)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: bench/results)")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    cfg = QUICK if args.quick else FULL
    out = args.out or (ROOT / "bench" / "results" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    root = args.root.resolve()

    # A SIGTERM unwinds like Ctrl-C, so every started process is stopped by the finally blocks.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))

    try:
        gunicorn = tool("gunicorn")
    except RuntimeError:
        gunicorn = None
    system = machine.describe(tool("uwsgi"), gunicorn)
    has_fleet = fleet_available(root)
    if not has_fleet:
        log("note: this tree has no fleet command line yet (fleet/cli.py): fleet parts are skipped")
    started = time.monotonic()
    failed = []
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's workers (another user) must reach the clusters' sockets in here
        for section in only:
            # Each section is its own run, stamped before and after: other work on the machine skews
            # everything, so its load is part of the result.
            stamp = evidence.start(root)
            stamp["system"] = {k: system[k] for k in ("kernel", "os", "versions")}
            log(f"== {section} (load average {stamp['load_before'][0]:.2f})")
            try:
                data = RUNNERS[section](root, work / section, cfg, has_fleet)
            except KeyboardInterrupt:
                log("interrupted: stopping everything this run started")
                return 130
            except Exception as e:  # one broken section must not lose the others
                log(f"!! {section} failed: {type(e).__name__}: {e}")
                data = {"error": f"{type(e).__name__}: {e}"}
                failed.append(section)
            path = save(section, evidence.finish(stamp), data, quick=args.quick, out=out)
            log(f"   {path}")
    report.write(out)
    log(f"done in {time.monotonic() - started:.0f} s: {out / 'results.md'}")
    return 1 if failed else 0


def save(section: str, stamp: dict, data: dict, *, quick: bool, out: Path) -> Path:
    """The section's own dated results file; the bulky reload timelines go beside it (compact)."""
    data = json.loads(json.dumps(data))
    timelines = {}
    if section == "reload":
        for group, kinds in data.items():
            for kind, scenario in kinds.items() if isinstance(kinds, dict) else ():
                if isinstance(scenario, dict) and "timeline" in scenario:
                    timelines[f"{group}/{kind}"] = scenario.pop("timeline")
    path = evidence.write(section, stamp, data, quick=quick, out=out)
    if timelines:
        (path.parent / f"{path.stem}{report.TIMELINES}").write_text(json.dumps(timelines, separators=(",", ":")) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
