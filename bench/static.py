"""Static files: the same file served by nginx from a vassal's `[fleet] static` folder, and through a vassal
(Flask's own static route, `send_from_directory`), in one cluster, with wrk keep-alive clients.

The cluster's vassals say `static = /assets static`: nginx answers /assets/NAME from app/static, while
/static/NAME (Flask's route for the same folder) goes to a worker. Each size is measured in back-to-back
pairs (bench.throughput.measure_pairs), so the ratio is robust to a shared machine's drift.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bench import stats, throughput
from bench.servers import Target
from harness.cluster import Cluster, copy_tree
from harness.ports import free_port
from harness.procs import Procs

VASSAL = "; the static bench\n[uwsgi]\nprocesses = {processes}\n\n[fleet]\nstatic = /assets static\n"
# The example app's stylesheet (small, as most static files are), and a 64 KiB file (an image or a bundle).
SIZES = (("small", "style.css"), ("64k", "bench-64k.js"))


def run(root: Path, work: Path, plan: throughput.Plan, log: Callable[[str], None], processes: int = 2) -> dict:
    """Req/s and latency of each file through nginx alone and through a vassal of `processes` workers."""
    rows = []
    with Procs() as procs:
        cluster = Cluster(copy_tree(root, work / "tree"), free_port())
        (cluster.root / "app" / "static" / "bench-64k.js").write_text(("// fleet static bench\n" * 2979)[: 64 << 10])
        cluster.set_vassals([])
        cluster.write_vassal("backend-1.ini", VASSAL.format(processes=processes))
        procs.on_close(cluster.down)
        cluster.up(timeout=300)
        for size, name in SIZES:
            vassal = Target(f"vassal-{size}", f"{name} through a vassal (Flask)", cluster.port, f"/static/{name}")
            nginx = Target(f"nginx-{size}", f"{name} from nginx ([fleet] static)", cluster.port, f"/assets/{name}")
            log(f"  {name}: nginx vs a vassal of {processes} workers, {plan.rounds} pairs of {plan.seconds:.0f} s")
            runs, ratios = throughput.measure_pairs(vassal, [nginx], plan, log)
            summary = throughput.summarize([vassal, nginx], runs)
            r = ratios[nginx.key]
            rows.append(
                {
                    "size": size,
                    "file": name,
                    "bytes": (cluster.root / "app" / "static" / name).stat().st_size,
                    "nginx": _row(summary[1]),
                    "vassal": _row(summary[0]),
                    "ratio": {"median": stats.median(r), "min": min(r), "max": max(r), "pairs": r},
                }
            )
    # What the README quotes, by file (the rows keep every pair).
    quoted = {
        row["file"]: {
            "nginx_rps": row["nginx"]["rps_median"],
            "vassal_rps": row["vassal"]["rps_median"],
            "ratio": row["ratio"]["median"],
        }
        for row in rows
    }
    return {"plan": plan.__dict__, "processes": processes, "rows": rows, "summary": quoted}


def _row(row: dict) -> dict:
    keep = ("rps_median", "rps_min", "rps_max", "p50_ms", "p99_ms", "max_ms", "errors", "background_busy")
    return {k: row[k] for k in keep}


def static_md(doc: dict) -> list[str]:
    """The README's and results.md's table: req/s of each file from nginx and through a vassal."""
    lines = [
        f"wrk -t{doc['plan']['threads']} -c{doc['plan']['connections']} keep-alive; {doc['plan']['rounds']} pairs of "
        f"{doc['plan']['seconds']:.0f} s; one vassal of {doc['processes']} workers.",
        "",
        "| file | nginx req/s | vassal req/s | nginx / vassal | p99 nginx | p99 vassal | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in doc["rows"]:
        n, v, r = row["nginx"], row["vassal"], row["ratio"]
        lines.append(
            f"| {row['file']} ({row['bytes']} B) | {n['rps_median']:,.0f} | {v['rps_median']:,.0f} | "
            f"{r['median']:.1f}x ({r['min']:.1f}-{r['max']:.1f}) | {n['p99_ms']:.2f} ms | {v['p99_ms']:.2f} ms | "
            f"{n['errors'] + v['errors']} |"
        )
    return lines
