"""Fixtures for every tier, and the CI rule: under CI=true a skipped test is a failed test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from harness.cluster import Cluster, base_dir

TWO_BACKENDS = {f"backend-{i}.ini": "[uwsgi]\nprocesses = 2\n" for i in (1, 2)}


@pytest.fixture(scope="session")
def cluster_parent() -> Iterator[Path]:
    path = base_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_cluster(cluster_parent: Path) -> Iterator:
    """Factory: a fresh cluster (not started); every one made is stopped at teardown."""
    made: list[Cluster] = []

    def make(vassal_files: dict[str, str] | None = None) -> Cluster:
        cluster = Cluster.create(cluster_parent, vassal_files)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.down()


@pytest.fixture
def cluster(make_cluster) -> Cluster:
    """A running cluster with the two example backends."""
    c = make_cluster(TWO_BACKENDS)
    c.up()
    return c


# CI installs everything every tier needs (.ci/run), so a test that skips there skipped because something is
# missing or broken: it must fail the run, whatever the reason or the variable that asked for the skip.
# Only CI=true turns this on; nothing turns it off. An expected failure (xfail) ran and is not a skip.
def _in_ci() -> bool:
    return os.environ.get("CI") == "true"


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])  # (path, line, "Skipped: reason")
    return str(longrepr)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under CI=true, a test skipped in setup, call or teardown (skip, skipif, a fixture's skip) fails."""
    report = yield
    if _in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"CI=true: a skipped test fails the run ({_skip_reason(report)})"
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    """Under CI=true, a module skipped while collected (`pytest.skip(allow_module_level=True)`,
    `importorskip`) is a collection error."""
    report = yield
    if _in_ci() and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"CI=true: a skipped module fails the run ({_skip_reason(report)})"
    return report
