from __future__ import annotations

import shutil
from collections.abc import Iterator
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
