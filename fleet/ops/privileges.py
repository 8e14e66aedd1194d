"""Started as root, nothing runs as root that need not: nginx's workers drop to www-data (nginx.conf's
`user`), and the vassals, the app's code, run as an unprivileged user (FLEET_USER, default www-data).

The sockets are 0660 in a 0750 folder with that user's group, so nginx reaches them and no one else
does. The vassals' logs, stats sockets and master FIFOs belong to the vassal user, so that a graceful
reload (uWSGI re-executes itself, already unprivileged) can open them again.
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from dataclasses import dataclass
from pathlib import Path

from fleet.errors import FleetError
from fleet.layout import Layout
from fleet.proxy import nginx

DEFAULT_USER = "www-data"


@dataclass(frozen=True)
class Drop:
    """Who the vassals run as, and the group that may use their sockets."""

    user: str | None  # None: not started as root, or FLEET_USER=root (run as the starting user)
    group: str | None  # nginx workers' group: the sockets get it


def drop_for(user: str | None = None) -> Drop:
    if os.geteuid() != 0:
        return Drop(None, None)
    worker = nginx.worker_user()
    group = grp.getgrgid(pwd.getpwnam(worker).pw_gid).gr_name if worker else None
    user = user or os.environ.get("FLEET_USER") or DEFAULT_USER
    if user == "root":
        return Drop(None, group)
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise FleetError(f"FLEET_USER={user}: there is no such user. Create it, or choose another.") from None
    return Drop(user, group)


def prepare(layout: Layout, drop: Drop, needs_nginx: bool) -> list[str]:
    """Set run/'s ownership and modes; returns the Emperor's extra arguments for the vassals."""
    extra: list[str] = []
    if drop.group:
        gid = grp.getgrnam(drop.group).gr_gid
        os.chown(layout.sockets, 0, gid)
        os.chmod(layout.sockets, 0o750)
        extra.append(f"--vassal-set=chown-socket=root:{drop.group}")
        if needs_nginx:
            _check_searchable(layout.run, f"nginx's workers (group {drop.group}) cannot reach the sockets")
    else:
        os.chmod(layout.sockets, 0o700)  # the Emperor creates on-demand sockets 0666 until a vassal starts
    if drop.user:
        pw = pwd.getpwnam(drop.user)
        for folder in (layout.stats, layout.fifo_dir):
            os.chown(folder, pw.pw_uid, pw.pw_gid)
        extra += [f"--vassal-set=uid={drop.user}", f"--vassal-set=gid={drop.group or pw.pw_gid}"]
        why = f"the vassals run as {drop.user} (FLEET_USER; `root` keeps them as root)"
        for path in (Path(sys.base_prefix), Path(sys.prefix), layout.app):
            _check_searchable(path, f"{why}, but cannot read Python or the app")
    return extra


def environment(drop: Drop) -> dict[str, str]:
    """For the vassal launcher: whose log files to create."""
    return {"FLEET_VASSAL_USER": drop.user} if drop.user else {}


def _check_searchable(path: Path, problem: str) -> None:
    """Every folder from / down to `path` must be searchable by others."""
    for folder in [path, *path.parents]:
        try:
            mode = os.stat(folder).st_mode
        except FileNotFoundError:
            continue
        if not mode & 0o001:
            raise FleetError(
                f"{problem}: {folder} is not searchable by others. Run `chmod o+x {folder}`, "
                "or put the cluster (and Python) in another folder."
            )
