"""The compose cluster for the end-to-end tests (marker `e2e`).

Each test module gets its own copy of the tree (so the checkout's vassals/ is never touched), its own
compose project name and its own free port, so runs do not clash with each other or with `make run`.
Without a Docker engine the tests are skipped with the reason, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from harness.ports import free_port
from harness.wait import wait_for
from tests.e2e.compose import (
    CLIENTS,
    UP_DEADLINE,
    ComposeCluster,
    client_problem,
    copy_tree,
    docker_problem,
)


@pytest.fixture(scope="module", params=sorted(CLIENTS))
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeCluster]:
    """A running compose cluster in a copy of the tree, for each compose client; brought down at the end."""
    problem = docker_problem() or client_problem(request.param)
    if problem:
        if os.environ.get("CI") == "true":  # FLEET_COMPOSE too: under CI every client runs
            pytest.fail(f"CI=true but the e2e tier cannot run: {problem}")
        pytest.skip(problem)
    compose = CLIENTS[request.param][0]
    root = copy_tree(tmp_path_factory.mktemp("compose") / "fleet")
    c = ComposeCluster(root, f"fleete2e{uuid.uuid4().hex[:10]}", free_port(), compose)

    c.build_images()

    try:
        t0 = time.monotonic()
        try:
            c.compose("up", "--detach", "--no-build", timeout=UP_DEADLINE)
            wait_for("a first 200 through the published port", c.first_answer, UP_DEADLINE)
        except (AssertionError, subprocess.TimeoutExpired):
            print(f"compose logs:\n{c.logs()}")  # shown with the failed setup
            raise
        print(f"compose up to first 200: {time.monotonic() - t0:.1f}s ({' '.join(compose)})")
        yield c
    finally:
        if not c.down_done:
            c.down()
        c.remove_images()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Attach the cluster's compose logs to the report of a failed test."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        c = getattr(item, "funcargs", {}).get("stack")
        if isinstance(c, ComposeCluster) and not c.down_done:
            report.sections.append(("compose logs", c.logs()))
