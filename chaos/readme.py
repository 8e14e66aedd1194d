"""README.md's reliability section, generated from the latest full chaos results file (never edited by hand):
`python -m chaos.readme` rewrites what stands between the chaos markers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from chaos.report import REPO, _cell

RESULTS = REPO / "bench" / "results" / "chaos"
BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"


def latest_full() -> Path:
    runs = sorted(p for p in RESULTS.glob("*.json") if json.loads(p.read_text()).get("mode") == "full")
    if not runs:
        raise SystemExit(f"no full chaos run in {RESULTS}: run `make chaos` first")
    return runs[-1]


def section(results: Path) -> str:
    doc = json.loads(results.read_text())
    s = doc["stamp"]
    rows = ["| part killed | kills | GETs failed | POSTs failed | routed again | max latency |"]
    rows += ["|---|---:|---:|---:|---:|---:|"]
    rows += ["| " + " | ".join(_cell(row)[:6]) + " |" for row in doc["parts"]]
    before, after = s["load_before"][0], s["load_after"][0]
    intro = (
        f"Every part killed -9 under load ({doc['profile']}; `make chaos`, table in `bench/results/chaos/chaos.md` "
        f"from `{results.relative_to(REPO)}`, commit `{s['commit'][:12]}`, load average {before} before and "
        f"{after} after on {s['machine']['cores']} cores):"
    )
    return f"{BEGIN}\n{intro}\n\n" + "\n".join(rows) + f"\n{END}"


def main() -> None:
    readme = REPO / "README.md"
    text = readme.read_text()
    if BEGIN not in text:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block")
    block = section(latest_full())
    readme.write_text(re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S))


if __name__ == "__main__":
    main()
