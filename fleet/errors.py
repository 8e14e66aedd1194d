"""Errors that end a command: each carries its exit code and a message that says what to do next."""

from __future__ import annotations

import errno
import os


class FleetError(Exception):
    """A failure the user can act on; `main()` prints the message and exits with `exit_code`."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class NotARoot(FleetError):
    """The folder is not a fleet cluster (no emperor.ini)."""

    exit_code = 2


class MissingTool(FleetError):
    """nginx or uwsgi is not installed."""

    exit_code = 3


class AlreadyRunning(FleetError):
    """`fleet up` on a cluster that is already up."""

    exit_code = 4


class NotRunning(FleetError):
    """A command that needs the cluster up, on a cluster that is down."""

    exit_code = 5


class InvalidVassal(FleetError):
    """A vassal file or name that fleet cannot run."""

    exit_code = 1


class Timeout(FleetError):
    """Something did not happen within its deadline."""

    exit_code = 6


class NginxConfigError(FleetError):
    """nginx rejected a configuration (`nginx -t`); the running nginx keeps the last good one."""

    exit_code = 7


# What to do about an OSError, by errno; the default covers the rest.
_WHAT_TO_DO = {
    errno.EACCES: "make it writable (or readable) by user {uid}, or run fleet as its owner",
    errno.EPERM: "make it writable (or readable) by user {uid}, or run fleet as its owner",
    errno.EROFS: "the filesystem is read-only: remount it read-write, or move the cluster's folder",
    errno.ENOSPC: "the disk is full: free some space",
    errno.EDQUOT: "the disk quota is used up: free some space",
    errno.ENOTDIR: "a part of the path is not a folder: put the folder back",
    errno.EISDIR: "it is a folder where a file is expected: remove or rename it",
    errno.ENOENT: "it does not exist: check the path, or create it",
    errno.ELOOP: "it is a symlink loop: point the symlink at a real file",
}


def describe(e: OSError) -> str:
    """One line for an OSError: the path, what went wrong and what to do."""
    path = e.filename if e.filename is not None else ""
    what = (e.strerror or str(e) or type(e).__name__).lower()
    fix = _WHAT_TO_DO.get(e.errno or 0, "check the path, its permissions and the free disk space")
    fix = fix.format(uid=os.geteuid())
    return f"{path}: {what}: {fix}" if path else f"{what}: {fix}"
