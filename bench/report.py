"""Turn results.json into results.md (tables, targets met or not) and PNG plots next to it.

The tables are in report_speed (throughput, the hop, tuning) and report_changes (hot add, keep-alive
churn, reloads, scale); the plots in report_plots.
"""

from __future__ import annotations

from pathlib import Path

from bench.report_changes import hotadd_md, reload_md, scale_md
from bench.report_plots import plot_all
from bench.report_speed import targets_md, throughput_md, tuning_md


def machine_md(m: dict) -> str:
    v = m.get("versions", {})
    return (
        f"Measured {m.get('date', '?')} on {m.get('cpus', '?')} CPUs ({m.get('cpu_model', '?')}), "
        f"{m.get('memory_gib', '?')} GiB, Linux {m.get('kernel', '?')} ({m.get('os', '?')}); "
        f"nginx {v.get('nginx', '?')}, uWSGI {v.get('uwsgi', '?')}, Python {v.get('python', '?')}, "
        f"Flask {v.get('flask', '?')}, gunicorn {v.get('gunicorn', '?')}, granian {v.get('granian', '?')}, "
        f"wrk {v.get('wrk', '?')}. Load average at start: {', '.join(str(x) for x in m.get('loadavg_at_start', []))}."
    )


def busy_md(data: dict) -> str:
    """How busy the machine was around a section (other engineers' work shares the cores)."""
    load = data.get("loadavg_1min")
    when = data.get("measured_at", "?")
    took = data.get("seconds", "?")
    return f"_Ran {when}, {took} s; 1-minute load average before/after: {load or '?'}._"


def markdown(results: dict, plots: list[str]) -> str:
    out = ["# fleet benchmarks", ""]
    if results.get("quick"):
        out += ["**Quick run (smoke test): too short to quote.**", ""]
    if "machine" in results:
        out += [machine_md(results["machine"]), ""]
    sections = [
        ("throughput", "Throughput and latency, GET / (same app, 2 workers in all)", throughput_md),
        ("tuning", "Tuning: where the hop goes, one change at a time", tuning_md),
        ("hotadd", "Hot add and removal", hotadd_md),
        ("reload", "Reloads, crashes and changes under load", reload_md),
        ("scale", "Cost as vassals grow", scale_md),
    ]
    if isinstance(results.get("throughput"), dict) and results["throughput"].get("rows"):
        out += ["## Targets", "", *targets_md(results["throughput"]), ""]
    for key, title, render in sections:
        data = results.get(key)
        if not isinstance(data, dict):
            continue
        out += [f"## {title}", ""]
        if "error" in data or "skipped" in data:
            out += [f"Not measured: {data.get('error') or data.get('skipped')}", ""]
            continue
        out += [busy_md(data), "", *render(data), ""]
        png = f"{key}.png"
        if png in plots:
            out += [f"![{title}]({png})", ""]
    return "\n".join(out)


def write(results: dict, out: Path) -> None:
    plots = plot_all(results, out)
    (out / "results.md").write_text(markdown(results, plots) + "\n")
