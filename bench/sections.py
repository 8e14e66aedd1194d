"""The sections of `python -m bench`: each starts what it measures, measures, stops it, returns a dict."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench import churn, hopcpu, hotadd, https, keepalive, reload, scale, static, stats, throughput
from bench.servers import Stacks
from bench.variants import shipped_options, variants
from harness.cluster import Cluster, copy_tree
from harness.ports import free_port
from harness.procs import Procs


@dataclass(frozen=True)
class Config:
    rounds: int
    seconds: float
    hop_rounds: int
    hop_seconds: float
    tuning_rounds: int
    tuning_seconds: float
    trials: int
    repeats: int
    churn_changes: int
    sizes: tuple[int, ...]
    idle_seconds: float


FULL = Config(
    rounds=6,
    seconds=3,
    hop_rounds=6,
    hop_seconds=3,
    tuning_rounds=5,
    tuning_seconds=2,
    trials=20,
    repeats=2,
    churn_changes=18,
    sizes=(1, 5, 20, 50),
    idle_seconds=10,
)
QUICK = Config(
    rounds=2,
    seconds=2,
    hop_rounds=2,
    hop_seconds=2,
    tuning_rounds=1,
    tuning_seconds=1,
    trials=4,
    repeats=1,
    churn_changes=6,
    sizes=(1, 5),
    idle_seconds=3,
)


def log(msg: str) -> None:
    print(msg, flush=True)


def shipped_threads(root: Path) -> int:
    return int(shipped_options(root).get("threads", "1"))


def run_throughput(root: Path, work: Path, cfg: Config, has_fleet: bool) -> dict:
    plan = throughput.Plan(rounds=cfg.rounds, seconds=cfg.seconds)
    threads = shipped_threads(root)
    with Procs() as procs:
        stacks = Stacks(procs, root, work, threads=threads)
        targets = [stacks.ceiling(), stacks.uwsgi_direct(), stacks.granian()]
        if has_fleet:
            targets.append(stacks.fleet(vassals=1, processes=2, key="fleet-1x2"))
            targets.append(stacks.fleet(vassals=2, processes=1, key="fleet"))
            # The thread count fleet does not ship, to show what the choice costs or buys.
            other = 2 if threads == 1 else 1
            targets.append(
                stacks.fleet(
                    vassals=1,
                    processes=2,
                    key=f"fleet-1x2-threads{other}",
                    extra={"threads": str(other)},
                    label=f"threads = {other}",
                )
            )
        targets += [stacks.granian_nginx(), stacks.granian_nginx(keepalive=True), stacks.tutorial(), stacks.gunicorn()]
        log(f"  {len(targets)} stacks up; {plan.rounds} rounds of {plan.seconds:.0f} s, wrk -t2 -c64")
        res = throughput.measure(targets, plan, log)
        # The proxy hop, like for like: the same app server's processes and threads with and without the
        # proxy in front, in back-to-back pairs.
        by_key = {t.key: t for t in targets}
        hop_plan = throughput.Plan(rounds=cfg.hop_rounds, seconds=cfg.hop_seconds)
        hops = {}
        for proxied, alone in (("fleet-1x2", "uwsgi-direct"), ("granian-nginx", "granian")):
            if proxied in by_key:
                log(f"  the hop: {proxied} vs {alone}, {hop_plan.rounds} pairs of {hop_plan.seconds:.0f} s")
                runs, ratios = throughput.measure_pairs(by_key[alone], [by_key[proxied]], hop_plan, log)
                hops[f"{proxied}/{alone}"] = throughput.hop_summary(runs, ratios, alone, proxied)
        cpu = {}
        if "fleet-1x2" in by_key:
            log("  CPU time per request by process: uwsgi-direct vs fleet-1x2")
            cpu = hopcpu.measure(
                {
                    "uwsgi-direct": (
                        by_key["uwsgi-direct"].url,
                        hopcpu.process_groups(by_key["uwsgi-direct"].detail["pid"], "uWSGI"),
                    ),
                    "fleet-1x2": (
                        by_key["fleet-1x2"].url,
                        hopcpu.fleet_groups(Path(by_key["fleet-1x2"].detail["root"])),
                    ),
                },
                rounds=cfg.hop_rounds,
            )
            log(f"  {cpu}")
        fair = {}
        for key in ("uwsgi-direct", "granian", "fleet-1x2"):
            if key in by_key:
                fair[key] = keepalive.fairness(by_key[key].port)
                log(f"  fairness {key}: {fair[key]}")
    rows = throughput.summarize(targets, res)
    pairs = [
        (t.key, base)
        for t in targets
        if t.key.startswith(("fleet", "granian"))
        for base in ("tutorial", "gunicorn", "ceiling", "uwsgi-direct", "granian", "granian-nginx")
        if t.key != base
    ]
    ratios = {f"{a}/{b}": throughput.paired_ratio(res, a, b) for a, b in (*pairs, ("tutorial", "gunicorn"))}
    return {
        "plan": plan.__dict__,
        "threads": threads,
        "rows": rows,
        "ratios": {k: v for k, v in ratios.items() if v},
        "hop": hops,
        "fairness": fair,
        "cpu_per_request": cpu,
    }


def run_tuning(root: Path, work: Path, cfg: Config, has_fleet: bool) -> dict:
    """fleet 1 vassal x 2 as shipped against one change at a time, in back-to-back pairs."""
    if not has_fleet:
        return {"skipped": "needs the fleet command line"}
    plan = throughput.Plan(rounds=cfg.tuning_rounds, seconds=cfg.tuning_seconds)
    rows = []
    with Procs() as procs:
        base = Stacks(procs, root, work).fleet(vassals=1, processes=2, key="shipped", label="as shipped")
        found = variants(root)
        log(f"  fleet as shipped vs {len(found)} one-change variants; {plan.rounds} pairs of {plan.seconds:.0f} s")
        base_runs = []
        for v in found:
            with Procs() as vprocs:
                target = Stacks(vprocs, root, work).fleet(
                    vassals=1, processes=2, key=v.key, extra=v.extra or None, edits=v.edits, label=v.label
                )
                runs, ratios = throughput.measure_pairs(base, [target], plan, log)
            base_runs += runs[base.key]
            row = throughput.summarize([target], runs)[0]
            r = ratios[target.key]
            row["variant"] = v.label
            row["gain"] = {"median": stats.median(r), "min": min(r), "max": max(r), "pairs": r}
            # The noise: how far apart two runs of the same thing are, from the base's own runs.
            row["base_rps_median"] = stats.median([x.rps for x in runs[base.key]])
            row["p99_vs_base"] = stats.median(
                [x.p99_ms / y.p99_ms for x, y in zip(runs[target.key], runs[base.key], strict=True) if y.p99_ms]
            )
            rows.append(row)
    base_row = throughput.summarize([base], {base.key: base_runs})[0]
    return {"plan": plan.__dict__, "base": base_row, "rows": rows, "noise": throughput.noise(base_runs)}


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
            cluster.up(timeout=300)
            log("  fleet: file drop to first answer through nginx (1 backend running)")
            fl = hotadd.fleet_trials(cluster, cfg.trials, log)
            out["fleet"] = {"trials": fl, **hotadd.summarize(fl)}
    return out


def run_reload(root: Path, work: Path, cfg: Config, has_fleet: bool) -> dict:
    if not has_fleet:
        return {"skipped": "needs the fleet command line"}
    out: dict = {}
    with Procs() as procs:
        cluster = Cluster(copy_tree(root, work / "churn"), free_port())
        cluster.set_vassals(["backend-1", "backend-2"])
        procs.on_close(cluster.down)
        cluster.up(timeout=300)
        log(f"  keep-alive churn: {cfg.churn_changes} add/touch/rm changes, 2 backends")
        out["churn"] = churn.run(cluster, log, changes=cfg.churn_changes)
    # The last groups check the threads trade-off with the thread count fleet does not ship.
    other = 2 if shipped_threads(root) == 1 else 1
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
            cluster.up(timeout=300)
            log(f"  {key} backend(s), 16 new-connection + 8 keep-alive clients")
            out[key] = {kind: reload.run_scenario(cluster, kind, log, repeats=repeats) for kind in kinds}
    return out


def run_scale(root: Path, work: Path, cfg: Config, has_fleet: bool) -> dict:
    if not has_fleet:
        return {"skipped": "needs the fleet command line"}
    work.mkdir(parents=True, exist_ok=True)
    rows = [scale.measure_size(root, work, n, cfg.idle_seconds, log) for n in cfg.sizes]
    return {"rows": rows, "idle_seconds": cfg.idle_seconds}


def run_https(root: Path, work: Path, cfg: Config, has_fleet: bool) -> dict:
    """HTTPS against HTTP through one fleet (1 vassal x 2 processes, --tls local, HTTP kept serving)."""
    if not has_fleet:
        return {"skipped": "needs the fleet command line"}
    plan = throughput.Plan(rounds=cfg.rounds, seconds=cfg.seconds)
    with Procs() as procs:
        cluster = Cluster(copy_tree(root, work / "https"), free_port())
        cluster.set_vassals(["backend-1"], processes=2)
        procs.on_close(cluster.down)
        https_port = free_port()
        cluster.up("--tls", "local", "--https-port", str(https_port), "--http-redirect", "off", timeout=300)
        https_url = f"https://localhost:{https_port}/"
        log(f"  HTTP vs HTTPS, keep-alive and new connections; {plan.rounds} rounds of {plan.seconds:.0f} s")
        results = https.measure(cluster.url + "/", https_url, plan, log)
        handshake = https.handshake_ms(https_url, cluster.run_dir / "tls" / "ca.crt", 20 if cfg is QUICK else 100)
        log(f"  TLS handshake (curl, new connections): {handshake}")
    return {"plan": plan.__dict__, **https.summarize(results), "handshake": handshake}


def run_static(root: Path, work: Path, cfg: Config, has_fleet: bool) -> dict:
    if not has_fleet:
        return {"skipped": "needs the fleet command line"}
    work.mkdir(parents=True, exist_ok=True)
    return static.run(root, work, throughput.Plan(rounds=cfg.hop_rounds, seconds=cfg.hop_seconds), log)


RUNNERS = {
    "throughput": run_throughput,
    "tuning": run_tuning,
    "hotadd": run_hotadd,
    "reload": run_reload,
    "scale": run_scale,
    "https": run_https,
    "static": run_static,
}
