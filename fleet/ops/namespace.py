"""Started as root in a folder others cannot search (a clone in root's 0700 home, a 0700 temp folder, or a
Python under /root/.pyenv), the unprivileged users fleet runs the vassals and nginx's workers as could not
reach the app, the venv, Python or the sockets. Rather than change a permission, `fleet up` then runs the
cluster in a private mount namespace of its own, in which each such folder shows the same entries with
mode 0711 (others may pass through it, not list it): a tmpfs laid over the folder, holding a bind mount of
each of its entries. Outside, nothing changes; the namespace ends with the last process of the cluster.

What the cluster's processes see inside is the folder's entries as they were at `fleet up`: an entry
created in such a folder afterwards (from outside) is not seen inside, and one created inside goes to the
tmpfs. Below the entries, everything is the real thing (writes in run/, vassals/... are seen by both).
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Iterable
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18


def unsearchable(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The folders on the way to `paths` (each path included, if a folder) that others cannot search,
    outermost first."""
    found: set[Path] = set()
    for path in paths:
        path = Path(path).resolve()
        for folder in [path, *path.parents]:
            try:
                mode = os.stat(folder).st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode) and not mode & 0o001:
                found.add(folder)
    return sorted(found, key=lambda p: (len(p.parts), str(p)))


def current() -> str:
    """This process's mount namespace (e.g. 'mnt:[4026531841]')."""
    return os.readlink("/proc/self/ns/mnt")


def open_up(folders: list[Path]) -> None:
    """Enter a private mount namespace in which each of `folders` (outermost first) is searchable by
    others. Raises OSError when this process may not (no CAP_SYS_ADMIN, or a seccomp filter, as in a
    default Docker container); nothing is changed then."""
    libc = ctypes.CDLL(None, use_errno=True)

    def check(result: int, what: str) -> None:
        if result != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")

    check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Private from here on: nothing mounted below leaks out to the machine, nor comes in.
    check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    for folder in folders:
        # The real folder, reached through a descriptor once the tmpfs hides it (as root: no search needed).
        fd = os.open(folder, os.O_PATH | os.O_DIRECTORY)
        try:
            real = f"/proc/self/fd/{fd}"
            st = os.stat(real)
            options = f"mode={stat.S_IMODE(st.st_mode) | 0o011:o},uid={st.st_uid},gid={st.st_gid},size=1m"
            check(libc.mount(b"fleet", os.fsencode(folder), b"tmpfs", 0, options.encode()), f"tmpfs on {folder}")
            for name in os.listdir(real):
                _expose(libc, check, f"{real}/{name}", folder / name)
        finally:
            os.close(fd)


def _expose(libc, check, source: str, target: Path) -> None:
    """Show `source` at `target` on the tmpfs: symlinks are copied, anything else bind-mounted."""
    kind = os.lstat(source).st_mode
    if stat.S_ISLNK(kind):
        os.symlink(os.readlink(source), target)
        return
    if stat.S_ISDIR(kind):
        target.mkdir()
    else:
        target.touch()
    check(libc.mount(os.fsencode(source), os.fsencode(target), None, MS_BIND | MS_REC, None), f"bind {target}")
