"""results' plots (PNG, matplotlib): throughput, tuning, hot add, reloads, scale."""

from __future__ import annotations

import math
from pathlib import Path

from bench.report_changes import STEPS, breakdown
from bench.report_speed import P99_TARGET_MS


def plot_all(results: dict, out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    for key, fn in (
        ("throughput", _plot_throughput),
        ("tuning", _plot_tuning),
        ("hotadd", _plot_hotadd),
        ("reload", _plot_reload),
        ("scale", _plot_scale),
    ):
        data = results.get(key)
        if not isinstance(data, dict) or "error" in data or "skipped" in data:
            continue
        try:
            fig = fn(plt, data)
        except (KeyError, ValueError, TypeError):
            continue
        if fig is None:
            continue
        fig.savefig(out / f"{key}.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        made.append(f"{key}.png")
    return made


def _plot_throughput(plt, tp: dict):
    all_rows = tp["rows"]
    ceiling = next((r for r in all_rows if r["key"] == "ceiling"), None)
    rows = [r for r in all_rows if r["key"] != "ceiling"][::-1]
    labels = [r["label"] for r in rows]
    fig, (ax, lat) = plt.subplots(1, 2, figsize=(13, 0.55 * len(rows) + 1.8), sharey=True)
    med = [r["rps_median"] for r in rows]
    lo = [r["rps_median"] - r["rps_min"] for r in rows]
    hi = [r["rps_max"] - r["rps_median"] for r in rows]
    colors = [
        "#d62728" if r["key"].startswith("fleet") else "#9467bd" if r["key"].startswith("granian") else "#7f7f7f"
        for r in rows
    ]
    ax.barh(labels, med, xerr=[lo, hi], color=colors, capsize=3)
    for y, r in enumerate(rows):
        ax.text(r["rps_max"], y, f"  {r['rps_median']:,.0f}", va="center", fontsize=8)
    ax.set_xlim(0, max(r["rps_max"] for r in rows) * 1.18)
    ax.set_xlabel("requests/s (median; bars: min-max over rounds)")
    title = "GET /, 2 workers, wrk -c64"
    if ceiling:
        title += f" (nginx return 200 ceiling: {ceiling['rps_median']:,.0f}/s, off scale)"
    ax.set_title(title, fontsize=10)
    ys = range(len(rows))
    lat.barh([y + 0.2 for y in ys], [r["p50_ms"] for r in rows], height=0.4, color="#1f77b4", label="p50")
    lat.barh([y - 0.2 for y in ys], [r["p99_ms"] for r in rows], height=0.4, color="#ff7f0e", label="p99")
    lat.axvline(P99_TARGET_MS, color="black", linestyle="--", linewidth=1, label=f"p99 target {P99_TARGET_MS:g} ms")
    lat.set_xlabel("latency ms (median over rounds)")
    lat.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _plot_tuning(plt, tu: dict):
    rows = [r for r in tu["rows"] if r.get("gain")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5))
    labels = [r.get("variant", r["label"]) for r in rows][::-1]
    med = [(r["gain"]["median"] - 1) * 100 for r in rows][::-1]
    lo = [(r["gain"]["median"] - r["gain"]["min"]) * 100 for r in rows][::-1]
    hi = [(r["gain"]["max"] - r["gain"]["median"]) * 100 for r in rows][::-1]
    colors = ["#2ca02c" if m > 0 else "#d62728" for m in med]
    ax.barh(labels, med, xerr=[lo, hi], color=colors, capsize=3)
    ax.axvline(0, color="black", linewidth=0.8)
    noise = (tu.get("noise") or {}).get("p90")
    if noise:
        ax.axvspan(-noise * 100, noise * 100, color="#cccccc", alpha=0.5, label="noise (p90 of shipped vs shipped)")
        ax.legend(fontsize=8, loc="best")
    ax.set_xlabel("req/s change vs fleet as shipped, % (median of pairs; bars: min-max)")
    ax.set_title("one change at a time to fleet (1 vassal x 2), real `fleet up`")
    return fig


def _plot_hotadd(plt, ha: dict):
    series = []
    for key, label in (("fleet", "fleet\n(through nginx)"), ("emperor", "Emperor alone\n(freq 3 s)")):
        if key in ha:
            trials = ha[key]["trials"]
            series.append((label, [t["add_s"] * 1000 for t in trials], [t["remove_s"] * 1000 for t in trials]))
    if not series:
        return None
    parts = breakdown(ha)
    fig, axes = plt.subplots(1, 3 if parts else 2, figsize=(14 if parts else 9, 3.5))
    for ax, idx, title in (
        (axes[0], 1, "file drop -> first answer"),
        (axes[1], 2, "file delete -> unrouted / gone"),
    ):
        data = [s[idx] for s in series]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(series) + 1), [s[0] for s in series])
        for i, d in enumerate(data, 1):
            ax.scatter([i] * len(d), d, s=10, alpha=0.6, color="#d62728" if i == 1 else "#7f7f7f")
        ax.set_ylabel("ms")
        ax.set_title(title)
    if parts:
        ax = axes[2]
        left = 0.0
        for step, color in zip(STEPS, ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"), strict=False):
            if step in parts:
                width = max(0.0, parts[step]["median"])
                ax.barh(["fleet add\n(medians)"], [width], left=left, color=color, label=step)
                left += width
        ax.set_xlabel("ms since the file drop")
        ax.set_title("where the add time goes")
        ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def _plot_reload(plt, rl: dict):
    panels = [
        (n, kind, s)
        for n, scen in rl.items()
        if isinstance(scen, dict) and n != "churn"
        for kind, s in scen.items()
        if isinstance(s, dict) and "timeline" in s
    ]
    if not panels:
        return None
    cols = 3
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(12, 3 * rows), squeeze=False)
    names = {"touch": "touch", "rolling": "fleet reload --all", "kill9": "kill -9 master"}
    for ax, (n, kind, s) in zip(axes.flat, panels, strict=False):
        tl = s["timeline"]
        ok = [(p[0], p[1]) for p in tl if p[2]]
        bad = [(p[0], p[1]) for p in tl if not p[2]]
        if ok:
            ax.scatter([p[0] for p in ok], [p[1] for p in ok], s=2, alpha=0.4, color="#1f77b4", rasterized=True)
        if bad:
            ax.scatter([p[0] for p in bad], [p[1] for p in bad], s=12, color="#d62728", marker="x", label="failed")
            ax.legend(loc="upper right", fontsize=7)
        for ev in s["events"]:
            ax.axvline(ev["at"], color="#7f7f7f", linestyle="--", linewidth=1)
        ax.set_yscale("log")
        ax.set_title(
            f"{names.get(kind, kind)}, backends {n}: failed {s['overall']['failed']}",
            fontsize=9,
        )
        ax.set_xlabel("s")
        ax.set_ylabel("latency ms")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def _plot_scale(plt, sc: dict):
    rows = sc["rows"]
    if not rows:
        return None
    n = [r["vassals"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    axes[0].plot(n, [r["vassal_pss_mib"] for r in rows], "o-", label="PSS")
    axes[0].plot(n, [r["vassal_rss_mib"] for r in rows], "s--", label="RSS")
    axes[0].set_title("memory per vassal (MiB)")
    axes[0].legend(fontsize=8)
    axes[1].plot(n, [r["up_s"] for r in rows], "o-", label="fleet up")
    axes[1].plot(n, [r["add_s"] or math.nan for r in rows], "s--", label="fleet add (1 more)")
    axes[1].set_title("seconds")
    axes[1].legend(fontsize=8)
    axes[2].plot(n, [r["nginx_reload_s"] * 1000 for r in rows], "o-", label="nginx reload")
    axes[2].plot(n, [(r.get("nginx_t_s") or math.nan) * 1000 for r in rows], "s--", label="nginx -t")
    axes[2].plot(n, [r.get("control_sync_ms") or math.nan for r in rows], "^:", label="control sync")
    axes[2].set_title("ms per change")
    axes[2].legend(fontsize=8)
    for key, label, style in (
        ("control", "control plane", "o-"),
        ("emperor", "Emperor", "s--"),
        ("vassals", "all vassals", "^:"),
    ):
        axes[3].plot(n, [r.get(f"idle_cpu_{key}_pct", math.nan) for r in rows], style, label=label)
    axes[3].set_title("idle CPU (% of a core)")
    axes[3].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("vassals")
    fig.tight_layout()
    return fig
