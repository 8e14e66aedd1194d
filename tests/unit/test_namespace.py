"""Which folders keep the vassals' user out, and what fleet says when it cannot open them (issue 17)."""

from __future__ import annotations

import os

import pytest

from fleet.errors import FleetError
from fleet.ops import namespace, privileges


def test_the_folders_others_cannot_search_are_found_outermost_first_the_path_included(tmp_path):
    outer = tmp_path / "outer"
    inner = outer / "open" / "inner"
    inner.mkdir(parents=True)
    (inner / "file").write_text("")
    outer.chmod(0o700)
    inner.chmod(0o750)
    found = namespace.unsearchable([inner / "file", inner, tmp_path / "missing" / "x"])
    assert [p for p in found if tmp_path in p.parents] == [outer, inner]
    assert found == sorted(found, key=lambda p: len(p.parts))


def test_a_searchable_path_needs_nothing(tmp_path):
    tmp_path.chmod(0o755)
    path = tmp_path / "tree"
    path.mkdir(mode=0o755)
    assert [p for p in namespace.unsearchable([path]) if tmp_path in (p, *p.parents)] == []


def test_when_no_namespace_can_be_had_the_error_names_every_folder_and_why(tmp_path):
    outer = tmp_path / "outer"
    inner = outer / "inner"
    inner.mkdir(parents=True)
    outer.chmod(0o700)
    inner.chmod(0o700)
    with pytest.raises(FleetError) as raised:
        privileges._check_searchable(inner, "the vassals cannot read the app", "no namespace (EPERM)")
    message = str(raised.value)
    assert f"{outer} {inner} are not searchable by others, and no namespace (EPERM)" in message
    assert "`chmod o+x " in message and f"{outer} {inner}`, or put the cluster" in message


def test_this_process_has_a_mount_namespace():
    assert namespace.current().startswith("mnt:[") and os.path.exists("/proc/self/ns/mnt")
