"""`python -m bench`: run the benchmark sections and write results.json, results.md and plots.

Sections: throughput (fleet vs the tutorial layout, gunicorn, granian alone and behind nginx, uWSGI alone
and the nginx ceiling; the proxy hop in pairs and by CPU time per request), tuning (fleet as shipped vs
one change at a time), hotadd (file drop to routed, vs the Emperor alone; removal; where the time goes),
reload (keep-alive clients across 18 add/touch/rm changes; touch, rolling reload, kill -9 under load, 1
and 2 backends), scale (1..50 vassals). The section runners are in bench/sections.py.
A run of some sections updates only those in the results file; --quick is a smoke run into results/quick/.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from bench import machine, report
from bench.sections import FULL, QUICK, RUNNERS, log
from bench.servers import tool
from harness.cluster import fleet_available

SECTIONS = ("throughput", "tuning", "hotadd", "reload", "scale")
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

    results = _load(out / "results.json")
    try:
        gunicorn = tool("gunicorn")
    except RuntimeError:
        gunicorn = None
    results["machine"] = machine.describe(tool("uwsgi"), gunicorn)
    results["quick"] = args.quick
    has_fleet = fleet_available(root)
    if not has_fleet:
        log("note: this tree has no fleet command line yet (fleet/cli.py): fleet parts are skipped")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # nginx's workers (another user) must reach the clusters' sockets in here
        for section in only:
            t0 = time.monotonic()
            load_before = os.getloadavg()[0]
            log(f"== {section} (load average {load_before:.2f})")
            try:
                results[section] = RUNNERS[section](root, work / section, cfg, has_fleet)
                results[section]["seconds"] = round(time.monotonic() - t0, 1)
                results[section]["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
                # Other work on the machine skews everything: say how busy it was.
                results[section]["loadavg_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            except KeyboardInterrupt:
                log("interrupted: stopping everything this run started")
                return 130
            except Exception as e:  # one broken section must not lose the others
                log(f"!! {section} failed: {type(e).__name__}: {e}")
                results[section] = {
                    "error": f"{type(e).__name__}: {e}",
                    "seconds": round(time.monotonic() - t0, 1),
                }
            _save(out / "results.json", results)
    report.write(results, out)
    log(f"done in {time.monotonic() - started:.0f} s: {out / 'results.md'}")
    return 1 if any("error" in results.get(s, {}) for s in only) else 0


TIMELINES = "reload-timelines.json"  # per-request points of the reload runs, kept out of results.json


def _load(path: Path) -> dict:
    """results.json with the reload timelines put back in."""
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    try:
        timelines = json.loads((path.parent / TIMELINES).read_text())
    except (OSError, ValueError):
        timelines = {}
    for group, kinds in results.get("reload", {}).items():
        for kind, scenario in kinds.items() if isinstance(kinds, dict) else ():
            if isinstance(scenario, dict) and f"{group}/{kind}" in timelines:
                scenario["timeline"] = timelines[f"{group}/{kind}"]
    return results


def _save(path: Path, results: dict) -> None:
    """results.json (readable) and the bulky reload timelines beside it (compact)."""
    slim = json.loads(json.dumps(results))
    timelines = {}
    for group, kinds in slim.get("reload", {}).items():
        for kind, scenario in kinds.items() if isinstance(kinds, dict) else ():
            if isinstance(scenario, dict) and "timeline" in scenario:
                timelines[f"{group}/{kind}"] = scenario.pop("timeline")
    for name, doc, indent in ((path.name, slim, 1), (TIMELINES, timelines, None)):
        tmp = path.parent / f".{name}.tmp"
        tmp.write_text(json.dumps(doc, indent=indent, separators=None if indent else (",", ":")) + "\n")
        tmp.replace(path.parent / name)


if __name__ == "__main__":
    sys.exit(main())
