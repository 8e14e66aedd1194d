"""The soak's report, in one folder: `<ended, UTC>.json` (a run's results file, stamped: everything, with the
time series; harness/evidence.py), and, generated from the latest of those, soak.md (the tables, under the
line that says which run) and soak.png (memory, open files and answered requests over time, the changes
marked). `python -m soak.report [FOLDER]` generates soak.md and soak.png again."""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness import evidence
from soak.churn import Step
from soak.sampler import Reading
from soak.verdict import Checkpoint, Failure, Verdict, explained


@dataclass
class Report:
    config: dict
    duration: float
    steps: list[Step]
    failures: list[Failure]
    readings: list[Reading]
    checkpoints: list[Checkpoint]
    ok_by_client: dict[str, int]
    ok_per_second: dict[int, int]
    latency_ms: Counter
    backends: dict[str, int]
    verdicts: list[Verdict]
    figures: dict[str, dict]
    leftovers: list[str]
    files: dict[str, str] = field(default_factory=dict)
    # p50, p99 and max of a report read back from its file (which keeps no latency histogram).
    latency_summary: dict[str, int] | None = None

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)

    def explained(self) -> dict[int, str]:
        post_clients = sum(n for c, n in self.config["clients"].items() if c.startswith("POST"))
        return explained(self.failures, self.steps, post_clients)

    def failed_by_cause(self) -> dict[str, int]:
        why = self.explained()
        causes = Counter(
            f"{f.client}: {f.cause}" + (" (explained)" if i in why else "") for i, f in enumerate(self.failures)
        )
        return dict(sorted(causes.items()))

    def summary(self) -> str:
        lines = [f"soak: {'PASSED' if self.ok else 'FAILED'} after {self.duration:.0f} s"]
        lines += [f"  [{'ok' if v.ok else 'FAIL'}] {v.name}: {v.detail}" for v in self.verdicts]
        return "\n".join(lines)

    def latency(self) -> dict[str, int]:
        return {
            "p50_ms": percentile(self.latency_ms, 0.5),
            "p99_ms": percentile(self.latency_ms, 0.99),
            "max_ms": max(self.latency_ms, default=0),
        }

    def to_dict(self) -> dict:
        why = self.explained()
        return {
            "ok": self.ok,
            "config": self.config,
            "duration_s": round(self.duration, 1),
            "requests": {
                "ok": sum(self.ok_by_client.values()),
                "ok_by_client": self.ok_by_client,
                "failed": len(self.failures),
                "failed_by_cause": self.failed_by_cause(),
                **(self.latency_summary or self.latency()),
                "by_backend": self.backends,
            },
            "verdicts": [v.__dict__ for v in self.verdicts],
            "processes": self.figures,
            "leftovers": self.leftovers,
            "steps": [s.to_dict() for s in self.steps],
            "failures": [f.to_dict() | {"explained": why.get(i, "")} for i, f in enumerate(self.failures[:500])],
            "ok_per_second": [self.ok_per_second.get(t, 0) for t in range(int(self.duration) + 1)],
            "checkpoints": [{"label": c.label, "t": c.t} for c in self.checkpoints],
            "readings": [[r.t, r.role, r.count, r.pss, r.anon, r.fds] for r in self.readings],
        }


def load(path: Path) -> Report:
    """A report back from its results file, enough to write its tables and draw it again."""
    doc = json.loads(path.read_text())["data"]
    readings = [Reading(t, role, None, count, pss, anon, fds) for t, role, count, pss, anon, fds in doc["readings"]]
    return Report(
        config=doc["config"],
        duration=doc["duration_s"],
        steps=[Step(**s) for s in doc["steps"]],
        failures=[Failure(**{k: v for k, v in f.items() if k != "explained"}) for f in doc["failures"]],
        readings=readings,
        checkpoints=[
            Checkpoint(c["label"], c["t"], tuple(r for r in readings if r.t == c["t"])) for c in doc["checkpoints"]
        ],
        ok_by_client=doc["requests"]["ok_by_client"],
        ok_per_second=dict(enumerate(doc["ok_per_second"])),
        latency_ms=Counter(),
        backends=doc["requests"]["by_backend"],
        verdicts=[Verdict(**v) for v in doc["verdicts"]],
        figures=doc["processes"],
        leftovers=doc["leftovers"],
        latency_summary={k: doc["requests"][k] for k in ("p50_ms", "p99_ms", "max_ms")},
    )


def write(report: Report, out: Path, stamp: dict) -> None:
    """The run's own results file in `out`, then soak.md and soak.png from it."""
    path = evidence.write("soak", stamp, report.to_dict(), folder=out)
    report.files["json"] = str(path)
    report.files.update(regenerate(out, report))


def regenerate(out: Path, report: Report | None = None) -> dict[str, str]:
    """soak.md and soak.png in `out` from its latest results file (`report`: that file's, already read)."""
    latest = evidence.runs("soak", folder=out)[-1]
    doc = json.loads(latest.read_text())
    report = report or load(latest)
    files = {}
    (out / "soak.md").write_text(markdown(report, evidence.provenance_md(doc, latest.name)))
    files["markdown"] = str(out / "soak.md")
    try:
        plot(report, out / "soak.png")
        files["plot"] = str(out / "soak.png")
    except ImportError:
        files["plot"] = "not drawn: matplotlib is not installed (it is in the bench extras)"
    return files


def markdown(report: Report, provenance: str = "") -> str:
    """soak.md: the verdicts and tables, under `provenance` (which run: evidence.provenance_md)."""
    doc = report.to_dict()
    req = doc["requests"]
    kinds = Counter(s.kind for s in report.steps)
    lines = [
        f"# Soak: {'passed' if report.ok else 'FAILED'}",
        "",
        "Generated from the soak's latest results file (beside this one): do not edit.",
        "",
        *([provenance, ""] if provenance else []),
        f"{report.duration:.0f} s of churn (seed {report.config['seed']}, {len(report.steps)} changes: "
        + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))
        + f") while {sum(report.config['clients'].values())} clients ran "
        + ", ".join(f"{n} {c}" for c, n in report.config["clients"].items())
        + ".",
        "",
        f"Requests: {req['ok']:,} answered, {req['failed']} failed; p50 {req['p50_ms']} ms, p99 {req['p99_ms']} ms, "
        f"max {req['max_ms']} ms.",
        "",
        "| verdict | | detail |",
        "| --- | --- | --- |",
        *[f"| {v.name} | {'ok' if v.ok else '**FAILED**'} | {v.detail} |" for v in report.verdicts],
        "",
        "Failed requests by cause: " + (", ".join(f"{c}: {n}" for c, n in req["failed_by_cause"].items()) or "none"),
        "",
        "At the checkpoints ("
        + ", ".join(f"{c.label} at {c.t:.0f} s" for c in report.checkpoints)
        + "; the cluster as it started, the backends the churn added removed):",
        "",
        "| process | PSS at each checkpoint | growth | anonymous memory | growth | open fds (fewest-most) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for role, g in report.figures.items():
        if g.get("judged"):
            lines.append(
                f"| {role} | {' / '.join(_mib(x) for x in g['pss'])} | {g['pss_growth']:+.1%} "
                f"| {' / '.join(_mib(x) for x in g['anon'])} | {g['anon_growth']:+.1%} "
                f"| {' / '.join(f'{a}-{b}' for a, b in g['fds'])} |"
            )
    end = max((r.t for r in report.readings), default=0.0)
    last = {r.role: r for r in report.readings if r.t == end}
    lines += ["", "At the end, every fleet process: " + ", ".join(
        f"{role} ({r.count} proc, {_mib(r.pss)}, {r.fds} fds)" for role, r in sorted(last.items())
    ) + ".", "", f"Leftover processes after `fleet down`: {'; '.join(report.leftovers) or 'none'}.", ""]  # fmt: skip
    return "\n".join(lines)


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, fds, rps) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    groups = sorted({r.role for r in report.readings if not r.role.startswith("vassal ")})
    for role in [*groups, "all vassals"]:
        by_t: dict[float, dict[str, Reading]] = {}  # a role read twice at one time (a checkpoint) counts once
        for r in report.readings:
            if r.role == role or (role == "all vassals" and r.role.startswith("vassal ")):
                by_t.setdefault(r.t, {})[r.role] = r
        ts = sorted(by_t)
        mem.plot(ts, [sum(r.pss for r in by_t[t].values()) / 2**20 for t in ts], label=role)
        fds.plot(ts, [sum(r.fds for r in by_t[t].values()) for t in ts], label=role)
    seconds = range(int(report.duration) + 1)
    rps.plot(seconds, [report.ok_per_second.get(t, 0) for t in seconds], color="tab:green", lw=0.8, label="answered/s")
    failed = [f.start for f in report.failures]
    rps.plot(failed, [0] * len(failed), "rx", label=f"failed ({len(failed)})")
    for axis in (mem, fds, rps):
        for step in report.steps:
            axis.axvline(step.at, color="grey", lw=0.4, alpha=0.5)
        for point in report.checkpoints:
            axis.axvline(point.t, color="tab:blue", lw=1.2, ls="--", alpha=0.7)
    mem.set_ylabel("PSS, MiB")
    fds.set_ylabel("open fds")
    rps.set_ylabel("requests/s")
    rps.set_xlabel("seconds (grey: changes; dashed blue: checkpoints)")
    mem.set_yscale("log")
    mem.legend(fontsize=7, ncol=3)
    fds.legend(fontsize=7, ncol=3)
    rps.legend(fontsize=7)
    mem.set_title(f"fleet soak, {report.duration:.0f} s, seed {report.config['seed']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def percentile(histogram: Counter[int], fraction: float) -> int:
    """The `fraction` percentile of a {value: count} histogram (0 when empty)."""
    total = sum(histogram.values())
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= fraction * total:
            return value
    return 0


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else evidence.RESULTS / "soak"
    print(regenerate(folder))
