"""The README is the front door, the paths the documentation names exist, and its numbers have evidence.

Which figures are checked: every number outside code in `docs/numbers.md` and in the README's
`## Numbers` section, in tables and prose alike, except the cells of a table's `goal` column (goals
come from the issues, not from a measurement). Each must be a number of a results file under
`bench/results/` (`*.md`, `*.json`: the stamped per-run files `<section>/<ended>.json` and the tables
generated from them; not `bench/results/quick/`, smoke runs too short to quote; not a commit's hash),
compared by value after removing thousands separators (`30,546`
is `30546`, `12.0%` is `12`); a float in a JSON file also counts rounded to 0, 1 or 2 decimals, and a
share (below 10) also as a percentage; lists in a JSON file are raw samples and do not count.
A figure is matched by value only: the check finds a figure that is in no results file, not a small
number quoted from the wrong row. Outside those sections, a line that says "measured" quotes no
figure: a measurement lives where it is checked.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
RESULTS = REPO / "bench" / "results"
QUICK = RESULTS / "quick"  # smoke runs (`python -m bench --quick`): too short to quote

# A number: thousands separated (1,234,567) or not, with an optional fraction; not part of a word
# (`p99`, `x2`, `-c64` are names, not figures) nor the tail of a version (`1.22.1`).
NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")
# In a results file, a number may follow a name (`http_502 2`, `touch x78`).
RECORDED = re.compile(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")
# A path in the repository as the documentation writes it: from one of the tree's top-level folders.
# `vassals/` is the user's folder: `vassals/backend-3.ini` is an example of a file one makes, so only
# the folder itself is checked there (as `run/`, fleet's runtime state, is not checked at all).
TOP = r"fleet|bench|tests|docker|docs|bin|soak|nginx|app|vassals|\.ci"
PATH = re.compile(rf"(?<![\w/.:~-])(?:{TOP})/[\w./*-]*")
# A module run with `python -m`.
MODULE = re.compile(r"-m\s+((?:fleet|bench|soak|tests)(?:\.[a-z_][a-z0-9_]*)*)")
LINK = re.compile(r"\]\(([^)\s]+)\)")
MEASURED = re.compile(r"\bmeasured\b", re.IGNORECASE)


def documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def prose(text: str) -> str:
    """The text without fenced blocks, inline code, link targets and HTML comments."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.sub(r"\]\([^)]*\)", "]", text)


def figures(text: str) -> list[Decimal]:
    return [Decimal(whole.replace(",", "") + (frac or "")).normalize() for whole, frac in NUMBER.findall(text)]


def section(text: str, heading: str) -> str:
    """The lines under `heading` down to the next heading of the same or a higher level."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines()
    start = lines.index(heading) + 1
    end = next(
        (i for i in range(start, len(lines)) if re.match(rf"#{{1,{level}}} ", lines[i])),
        len(lines),
    )
    return "\n".join(lines[start:end])


def checked_sections() -> dict[str, str]:
    """Where figures must have their results file: docs/numbers.md and the README's Numbers section."""
    return {
        "README.md, ## Numbers": section(README.read_text(), "## Numbers"),
        "docs/numbers.md": (DOCS / "numbers.md").read_text(),
    }


def without_goals(text: str) -> str:
    """The text with every cell of a table's `goal` column emptied."""
    out, goal = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            goal = None
            out.append(line)
            continue
        cells = line.strip().strip("|").split("|")
        if goal is None:
            names = [c.strip().lower() for c in cells]
            goal = names.index("goal") if "goal" in names else -1
        elif goal >= 0 and goal < len(cells):
            cells[goal] = ""
        out.append("|" + "|".join(cells) + "|")
    return "\n".join(out)


def _json_numbers(value: object, into: set[Decimal]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if k == "commit":  # a hash: its digits are no figure
                continue
            into.update(recorded(str(k)))
            _json_numbers(v, into)
    elif isinstance(value, list):
        # Lists are raw samples (rounds, pairs, readings, timelines): the documentation quotes what a
        # report made of them, and thousands of samples would back almost any figure.
        return
    elif isinstance(value, str):
        into.update(recorded(value))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        into.add(Decimal(str(value)).normalize())
        if isinstance(value, float):
            shares = [value, value * 100] if abs(value) < 10 else [value]
            for v in shares:
                for places in (0, 1, 2):
                    into.add(Decimal(str(round(abs(v), places))).normalize())


# A commit's hash as a generated table names it (`4f2442e`): hex with a letter and a digit in it.
HASH = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b")


def recorded(text: str) -> list[Decimal]:
    """The numbers of a results file's text, names included (`http_502`, `x78`), commits' hashes not."""
    text = HASH.sub("", text)
    return [Decimal(whole.replace(",", "") + (frac or "")).normalize() for whole, frac in RECORDED.findall(text)]


def evidence() -> set[Decimal]:
    """Every number of every results file under bench/results/ (in JSON files, but for lists), quick runs not."""
    found: set[Decimal] = set()
    for path in sorted(RESULTS.rglob("*")):
        if QUICK in path.parents:
            continue
        if path.suffix == ".md":
            found.update(recorded(path.read_text()))
        elif path.suffix == ".json":
            _json_numbers(json.loads(path.read_text()), found)
    return found


def unbacked(text: str, known: set[Decimal]) -> list[str]:
    return sorted({str(f) for f in figures(prose(without_goals(text))) if f not in known})


# --- (a) the front door ---------------------------------------------------------------------------


def test_the_readme_is_well_under_400_lines():
    assert len(README.read_text().splitlines()) < 400


def test_the_readme_links_every_docs_page_and_every_linked_page_exists():
    linked = {t.split("#")[0] for t in LINK.findall(README.read_text()) if t.startswith("docs/")}
    pages = {f"docs/{p.name}" for p in DOCS.glob("*.md")}
    assert pages, "docs/ has no page"
    assert linked >= pages, f"docs pages the README does not link: {sorted(pages - linked)}"
    assert all((REPO / p).exists() for p in linked), sorted(p for p in linked if not (REPO / p).exists())


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a markdown file."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.DOTALL | re.MULTILINE)
    out = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
        out.add(slug.replace(" ", "-"))
    return out


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.name)
def test_every_relative_link_and_its_anchor_resolve(doc: Path):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        where = (doc.parent / file).resolve() if file else doc
        missing_anchor = anchor and where.suffix == ".md" and where.exists() and anchor not in anchors(where)
        if not where.exists() or missing_anchor:
            broken.append(target)
    assert broken == []


# --- (b) every path named exists --------------------------------------------------------------------


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.name)
def test_every_repository_path_and_module_named_exists(doc: Path):
    text = doc.read_text()
    missing = []
    for found in PATH.findall(text):
        path = "vassals" if found.startswith("vassals/") else found.rstrip(".")
        if not (list(REPO.glob(path)) if "*" in path else (REPO / path).exists()):
            missing.append(path)
    for module in MODULE.findall(text):
        base = REPO / module.replace(".", "/")
        if not (base.with_suffix(".py").exists() or (base / "__init__.py").exists()):
            missing.append(module)
    assert missing == []


def test_the_path_check_sees_the_paths_it_should():
    """So that a change to the patterns cannot make the check above pass by finding nothing."""
    assert PATH.findall("see `fleet/core/states.py`, vassals/*.ini and (docs/design.md)") == [
        "fleet/core/states.py",
        "vassals/*.ini",
        "docs/design.md",
    ]
    assert PATH.findall("http://127.0.0.1:8080/ run/state.json ../bench/x.png /srv/fleet/vassals") == []
    assert PATH.findall("CI (`.ci/run`)") == [".ci/run"]
    assert MODULE.findall("python3 -m fleet.swarm.edge_cell --check; cells.fleet.invalid, soak.md") == [
        "fleet.swarm.edge_cell"
    ]


# --- (c) every number with its evidence -------------------------------------------------------------


@pytest.mark.parametrize("where", list(checked_sections()))
def test_every_figure_of_the_numbers_sections_is_in_a_results_file(where: str):
    text = checked_sections()[where]
    assert figures(prose(text)), f"{where}: no figure found: the section is missing or empty"
    assert unbacked(text, evidence()) == [], f"{where}: figures in no file under bench/results/"


@pytest.mark.parametrize("where", list(checked_sections()))
def test_a_figure_that_has_a_goal_says_whether_it_met_it(where: str):
    rows = []
    for line in checked_sections()[where].splitlines():
        if not line.startswith("|"):
            goal = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if goal is None:
            goal = cells.index("goal") if "goal" in [c.lower() for c in cells] else -1
        elif goal >= 0 and cells[goal] and not set(cells[goal]) <= {"-", " "}:
            if not re.search(r"\bmet\b", line):
                rows.append(line)
    assert rows == [], "rows with a goal that do not say `met` or `not met`"


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.name)
def test_outside_the_numbers_sections_nothing_measured_is_quoted(doc: Path):
    text = doc.read_text()
    if doc == DOCS / "numbers.md":
        return
    if doc == README:
        text = text.replace(section(text, "## Numbers"), "")
    quoted = [line for line in prose(text).splitlines() if MEASURED.search(line) and figures(line)]
    assert quoted == [], "a measured figure belongs in docs/numbers.md, with its results file"


def test_the_number_check_catches_an_unbacked_figure():
    """The check itself: a figure from no results file is reported, separators and goals handled."""
    known = {Decimal("30546").normalize(), Decimal("12").normalize()}
    assert unbacked("| 30,546 | 12.0% |", known) == []
    assert unbacked("the edge served 42,982 requests", known) == ["42982"]
    assert unbacked("| what | goal | measured |\n| --- | --- | --- |\n| x | <= 15 ms | 12 |", known) == []
    assert unbacked("p99 and x2 and `wrk -c64` and [a](b/3.png)", known) == []
    assert recorded("commit `4f2442e`; 2026-11-26T1457Z.json, 1,316 ms") == [
        Decimal(n).normalize() for n in ("2026", "11", "26", "1457", "1316")
    ]
