"""Started as root, nothing runs as root that need not: nginx's workers drop to www-data (nginx.conf's
`user`), and the vassals, the app's code, run as an unprivileged user (FLEET_USER, default www-data).

The sockets are 0660 in a 0750 folder with that user's group, so nginx reaches them and no one else
does. The vassals' logs, stats sockets and master FIFOs belong to the vassal user, so that a graceful
reload (uWSGI re-executes itself, already unprivileged) can open them again.

Those users must pass through every folder on the way to the cluster and to Python. When one does not let
them (root's 0700 home, a 0700 temp folder), `fleet up` runs the cluster in a mount namespace of its own in
which it does (fleet/ops/namespace.py); no permission on disk changes.
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from dataclasses import dataclass
from pathlib import Path

from fleet import uwsgi
from fleet.errors import FleetError
from fleet.layout import Layout
from fleet.ops import namespace
from fleet.proxy import nginx


@dataclass(frozen=True)
class Drop:
    """Who the vassals run as, and the group that may use their sockets."""

    user: str | None  # None: not started as root, or FLEET_USER=root (run as the starting user)
    group: str | None  # nginx workers' group: the sockets get it


def drop_for(user: str, source: str) -> Drop:
    """Who the vassals run as: `user` (the setting --user, from `source`), when started as root."""
    if os.geteuid() != 0:
        return Drop(None, None)
    worker = nginx.worker_user()
    group = grp.getgrgid(pwd.getpwnam(worker).pw_gid).gr_name if worker else None
    if user == "root":
        return Drop(None, group)
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise FleetError(f"{source}: there is no such user. Create it, or choose another.", exit_code=2) from None
    return Drop(user, group)


def reach(layout: Layout, drop: Drop, needs_nginx: bool) -> tuple[list[Path], str | None]:
    """Make the cluster and Python reachable by the users of `drop`: returns the folders others could not
    search, opened in this process's new mount namespace, or the reason that could not be done."""
    paths = [layout.root, layout.run] if drop.group and needs_nginx else []
    if drop.user:
        paths += [layout.root, layout.app, Path(sys.base_prefix), Path(sys.prefix), Path(uwsgi.binary())]
    folders = namespace.unsearchable(paths)
    if not folders:
        return [], None
    try:
        namespace.open_up(folders)
    except OSError as e:
        return [], f"fleet could not run the cluster in a mount namespace where it is searchable ({e.strerror})"
    return folders, None


def prepare(layout: Layout, drop: Drop, needs_nginx: bool, unreachable: str | None = None) -> list[str]:
    """Set run/'s ownership and modes; returns the Emperor's extra arguments for the vassals."""
    extra: list[str] = []
    if drop.group:
        gid = grp.getgrnam(drop.group).gr_gid
        os.chown(layout.sockets, 0, gid)
        os.chmod(layout.sockets, 0o750)  # the supervisor gives each socket this group (fleet/ops/sockets.py)
        if needs_nginx:
            _check_searchable(layout.run, f"nginx's workers (group {drop.group}) cannot reach the sockets", unreachable)
    else:
        os.chmod(layout.sockets, 0o700)  # no other user needs them: nginx's workers run as this user
    if drop.user:
        pw = pwd.getpwnam(drop.user)
        for folder in (layout.stats, layout.fifo_dir):
            os.chown(folder, pw.pw_uid, pw.pw_gid)
        extra += [f"--vassal-set=uid={drop.user}", f"--vassal-set=gid={drop.group or pw.pw_gid}"]
        why = f"the vassals run as {drop.user} (FLEET_USER; `root` keeps them as root)"
        for path in (Path(sys.base_prefix), Path(sys.prefix), layout.app):
            _check_searchable(path, f"{why}, but cannot read Python or the app", unreachable)
    return extra


def environment(drop: Drop) -> dict[str, str]:
    """For the vassal launcher: whose log files to create."""
    return {"FLEET_VASSAL_USER": drop.user} if drop.user else {}


def _check_searchable(path: Path, problem: str, why: str | None) -> None:
    """Every folder from / down to `path` must be searchable by others (`why`: why fleet could not
    make it so in a mount namespace)."""
    folders = namespace.unsearchable([path])
    if folders:
        blocked = " ".join(map(str, folders))
        raise FleetError(
            f"{problem}: {blocked} {'is' if len(folders) == 1 else 'are'} not searchable by others"
            + (f", and {why}" if why else "")
            + f". Run `chmod o+x {blocked}`, or put the cluster (and Python) in another folder."
        )
