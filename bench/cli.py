"""`python -m bench`: run the benchmark sections and write results.json, results.md and plots.

Sections: throughput (fleet vs the tutorial layout, gunicorn, uWSGI alone and the nginx ceiling),
tuning (fleet's data path, one option at a time), hotadd (file drop to routed, vs the Emperor alone;
removal), reload (touch, rolling reload, kill -9 under load, 1 and 2 backends), scale (1..50 vassals).
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
from dataclasses import dataclass
from pathlib import Path

from bench import hotadd, machine, reload, report, scale, stats, throughput
from bench.cluster import Cluster, copy_tree, fleet_available
from bench.procs import Procs, free_port
from bench.servers import Stacks, fleet_lab, lab_variants, shipped_options, tool

SECTIONS = ("throughput", "tuning", "hotadd", "reload", "scale")
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    rounds: int
    seconds: float
    tuning_rounds: int
    tuning_seconds: float
    trials: int
    repeats: int
    sizes: tuple[int, ...]
    idle_seconds: float


FULL = Config(
    rounds=6,
    seconds=3,
    tuning_rounds=6,
    tuning_seconds=1,
    trials=20,
    repeats=2,
    sizes=(1, 5, 20, 50),
    idle_seconds=10,
)
QUICK = Config(
    rounds=2, seconds=2, tuning_rounds=1, tuning_seconds=1, trials=4, repeats=1, sizes=(1, 5), idle_seconds=3
)


def log(msg: str) -> None:
    print(msg, flush=True)


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


# ---- sections ------------------------------------------------------------------------------------


def run_throughput(root: Path, work: Path, cfg: Config, has_fleet: bool) -> dict:
    plan = throughput.Plan(rounds=cfg.rounds, seconds=cfg.seconds)
    with Procs() as procs:
        stacks = Stacks(procs, root, work)
        targets = [stacks.ceiling(), stacks.uwsgi_direct()]
        if has_fleet:
            targets.append(stacks.fleet(vassals=2, processes=1, key="fleet"))
            targets.append(stacks.fleet(vassals=1, processes=2, key="fleet-1x2"))
            # The thread count fleet does not ship, to show what the choice costs or buys.
            other = 2 if int(shipped_options(root).get("threads", "1")) == 1 else 1
            targets.append(stacks.fleet(vassals=1, processes=2, key=f"fleet-1x2-threads{other}", threads=other))
        targets += [stacks.tutorial(), stacks.gunicorn()]
        log(f"  {len(targets)} stacks up; {plan.rounds} rounds of {plan.seconds:.0f} s, wrk -t2 -c64")
        res = throughput.measure(targets, plan, log)
    rows = throughput.summarize(targets, res)
    ratios = {
        f"{a}/{b}": throughput.paired_ratio(res, a, b)
        for a, b in (
            *(
                (t.key, base)
                for t in targets
                if t.key.startswith("fleet")
                for base in ("tutorial", "gunicorn", "ceiling", "uwsgi-direct")
            ),
            ("tutorial", "gunicorn"),
        )
    }
    return {
        "plan": plan.__dict__,
        "rows": rows,
        "ratios": {k: v for k, v in ratios.items() if v},
    }


def run_tuning(root: Path, work: Path, cfg: Config, has_fleet: bool) -> dict:
    plan = throughput.Plan(rounds=cfg.tuning_rounds, seconds=cfg.tuning_seconds)
    with Procs() as procs:
        stacks = Stacks(procs, root, work)
        shipped = fleet_lab(root)
        base = stacks.lab(shipped)
        variants = [stacks.lab(v) for v in lab_variants(shipped)]
        log(f"  fleet's settings vs {len(variants)} one-change variants; {plan.rounds} pairs of {plan.seconds:.0f} s")
        runs, ratios = throughput.measure_pairs(base, variants, plan, log)
    rows = throughput.summarize([base, *variants], runs)
    for row in rows[1:]:
        r = ratios[row["key"]]
        row["vs"] = base.key
        row["gain"] = {"median": stats.median(r), "min": min(r), "max": max(r), "pairs": r}
        paired = zip(runs[row["key"]], _base_runs_for(runs, base.key, row["key"], variants), strict=False)
        row["p99_vs_base"] = stats.median([v.p99_ms / b.p99_ms for v, b in paired if b.p99_ms])
    return {"plan": plan.__dict__, "rows": rows}


def _base_runs_for(runs: dict, base: str, key: str, variants: list) -> list:
    """The base's runs that were paired with `key` (the base's runs are pooled in variant order)."""
    keys = [v.key for v in variants]
    n = len(keys)
    i = keys.index(key)
    return runs[base][i::n]


def run_hotadd(root: Path, work: Path, cfg: Config, has_fleet: bool) -> dict:
    out: dict = {"trials": cfg.trials}
    with Procs() as procs:
        log("  the uWSGI Emperor alone (emperor-freq 3, its default)")
        emp = hotadd.emperor_trials(procs, root / "app", work / "emperor", cfg.trials, log)
        out["emperor"] = {"trials": emp, **hotadd.summarize(emp)}
    if has_fleet:
        with Procs() as procs:
            cluster = Cluster(copy_tree(root, work / "fleet"), free_port())
            cluster.set_vassals(["backend-1"])
            procs.on_close(cluster.down)
            cluster.up()
            log("  fleet: file drop to first answer through nginx (1 backend running)")
            fl = hotadd.fleet_trials(cluster, cfg.trials, log)
            out["fleet"] = {"trials": fl, **hotadd.summarize(fl)}
    return out


def run_reload(root: Path, work: Path, cfg: Config, has_fleet: bool) -> dict:
    if not has_fleet:
        return {"skipped": "needs the fleet command line"}
    out: dict = {}
    # The last groups check the threads trade-off with the thread count fleet does not ship: one thread
    # per worker is faster (see tuning), but was seen to reset a connection now and then during a reload.
    other = 2 if int(shipped_options(root).get("threads", "1")) == 1 else 1
    groups = (
        ("1", 1, None, ("touch", "rolling", "kill9"), cfg.repeats),
        ("2", 2, None, ("touch", "rolling", "kill9"), cfg.repeats),
        (f"1, threads = {other}", 1, {"threads": str(other)}, ("touch",), cfg.repeats * 2),
        (f"2, threads = {other}", 2, {"threads": str(other)}, ("touch", "rolling"), cfg.repeats * 2),
    )
    for key, n, extra, kinds, repeats in groups:
        with Procs() as procs:
            cluster = Cluster(copy_tree(root, work / f"reload-{len(out)}"), free_port())
            cluster.set_vassals([f"backend-{i}" for i in range(1, n + 1)], extra=extra)
            procs.on_close(cluster.down)
            cluster.up()
            log(f"  {key} backend(s), 16 concurrent clients")
            out[key] = {kind: reload.run_scenario(cluster, kind, log, repeats=repeats) for kind in kinds}
    return out


def run_scale(root: Path, work: Path, cfg: Config, has_fleet: bool) -> dict:
    if not has_fleet:
        return {"skipped": "needs the fleet command line"}
    work.mkdir(parents=True, exist_ok=True)
    rows = [scale.measure_size(root, work, n, cfg.idle_seconds, log) for n in cfg.sizes]
    return {"rows": rows, "idle_seconds": cfg.idle_seconds}


RUNNERS = {
    "throughput": run_throughput,
    "tuning": run_tuning,
    "hotadd": run_hotadd,
    "reload": run_reload,
    "scale": run_scale,
}


if __name__ == "__main__":
    sys.exit(main())
