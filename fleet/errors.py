"""Errors that end a command: each carries its exit code and a message that says what to do next."""

from __future__ import annotations


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
