"""The vassals' listening sockets, held by the supervisor for as long as each vassal's file exists.

A vassal's run/sockets/NAME.socket is bound here, not by uWSGI and not by the Emperor. The vassal launcher
(bin/fleet-vassal) asks for it on run/socket-holder.sock with the vassal's name and receives a copy of the
descriptor (SCM_RIGHTS), which it hands to uwsgi at fd 3 (`--socket fd://3`). When a vassal crashes,
the socket, and the connections waiting in its backlog, stay here until the respawned workers accept
them: only the requests being executed are lost. uWSGI keeps the inherited socket across its graceful
reloads (it re-executes itself with fd 3 open and finds it again by that name).

A socket that has had no vassal for `grace` seconds (a failed start retried with the Emperor's growing
delay, an app that no longer imports, an Emperor restarting) refuses what waits on it, until a vassal
takes it again (fleet/core/held.py): a request is answered, retried or refused, never left waiting.

A socket is closed, and its path removed, once its vassal's file is gone and its last vassal has exited
(the control plane drains a vassal before its file goes). The holder watches each vassal's master with a
pidfd, so the path goes the moment the vassal does.

If the holder's process dies, running vassals keep their own copies and serve on; a vassal started
meanwhile waits for the holder in the launcher (`wait` seconds), then exits and the Emperor tries it
again with its usual growing delay, until a new supervisor holds the sockets again.
"""

from __future__ import annotations

import array
import contextlib
import grp
import logging
import os
import select
import socket
import stat
import threading
import time
from dataclasses import dataclass

from fleet import processes
from fleet.core import held as outages
from fleet.layout import Layout

log = logging.getLogger("fleet.sockets")

BACKLOG = 1024  # the default 100 overflows into 502s under bursts
SWEEP_EVERY = 1.0  # seconds: also catches a file removed while its vassal was down (throttled, crashing)
MAX_NAME = 200


@dataclass
class Held:
    sock: socket.socket
    inode: int  # of the path when bound: never remove a path that is no longer ours
    pidfd: int | None = None  # the vassal master that last received it, while it runs
    outage: outages.Outage = outages.Outage()
    refusing: bool = False  # what waits on it is being refused: no vassal for GRACE seconds


def valid_name(name: str) -> bool:
    """A vassal name the holder binds a socket for: one path component, as vassal file names are."""
    return 0 < len(name) <= MAX_NAME and "/" not in name and "\0" not in name and not name.startswith(".")


class SocketHolder:
    """Serves run/socket-holder.sock from a thread of the supervisor; `close()` releases everything."""

    def __init__(self, layout: Layout, group: str | None = None, grace: float = outages.GRACE):
        self.layout, self.group, self.grace = layout, group, grace
        self.held: dict[str, Held] = {}
        self.lock = threading.Lock()
        self.control: socket.socket | None = None
        self.wake_r, self.wake_w = os.pipe()
        self.thread: threading.Thread | None = None
        self.stopping = False

    def start(self) -> None:
        path = self.layout.socket_holder
        path.unlink(missing_ok=True)
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # only this user (the one that starts the Emperor and its launchers)
        try:
            control.bind(str(path))
        finally:
            os.umask(old)
        control.listen(64)
        self.control = control
        self.thread = threading.Thread(target=self._serve, name="socket-holder", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving and close every socket (called once the Emperor and its vassals are gone)."""
        self.stopping = True
        os.write(self.wake_w, b"x")
        if self.thread is not None:
            self.thread.join(5)
        with self.lock:
            for name in list(self.held):
                self._release(name)
        if self.control is not None:
            self.control.close()
            self.layout.socket_holder.unlink(missing_ok=True)
        os.close(self.wake_r)
        os.close(self.wake_w)

    def socket_for(self, name: str) -> socket.socket:
        """The held socket of vassal `name`, bound (mode 0660, nginx workers' group) on first use."""
        with self.lock:
            held = self.held.get(name)
            if held is None:
                held = self.held[name] = self._bind(name)
            return held.sock

    def _bind(self, name: str) -> Held:
        path = self.layout.socket(name)
        path.unlink(missing_ok=True)  # a leftover of a cluster that was not stopped cleanly
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o660)
        if self.group:
            os.chown(path, 0, grp.getgrnam(self.group).gr_gid)
        sock.listen(BACKLOG)
        # uWSGI makes its listening sockets non-blocking (core/socket.c), which is the shared file
        # description's flag: set here as well, so that the holder's own accepts never block either.
        sock.setblocking(False)
        return Held(sock, os.stat(path).st_ino)

    def _release(self, name: str) -> None:
        held = self.held.pop(name)
        path = self.layout.socket(name)
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == held.inode and stat.S_ISSOCK(os.stat(path).st_mode):
                path.unlink()
        held.sock.close()
        if held.pidfd is not None:
            os.close(held.pidfd)

    def _serve(self) -> None:
        assert self.control is not None
        while not self.stopping:
            with self.lock:
                watched = {h.pidfd: name for name, h in self.held.items() if h.pidfd is not None}
                refused = {h.sock.fileno(): name for name, h in self.held.items() if h.refusing}
                timeout = self._next_refusal(time.monotonic())
            # poll, not select: a few hundred vassals are a pidfd and a socket each, past select's 1024 limit
            poller = select.poll()
            for fd in (self.control.fileno(), self.wake_r, *watched, *refused):
                poller.register(fd, select.POLLIN)
            ready = {fd for fd, _ in poller.poll(timeout * 1000)}
            if self.stopping:
                return
            now = time.monotonic()
            # Exits first: answering a launcher may close a pidfd and get its number again for the new one.
            with self.lock:
                for fd, name in watched.items():
                    held = self.held.get(name)
                    if fd in ready and held is not None and held.pidfd == fd:
                        os.close(fd)
                        held.pidfd = None  # its vassal exited: the Emperor starts another, or not
                        held.outage = outages.exited(held.outage, now)
                self.sweep()
                self._refuse(now)
            if self.control.fileno() in ready:
                try:
                    self._answer()
                except Exception:  # one launcher's bad luck must not end the holder: the Emperor retries it
                    log.exception("socket holder: could not answer a launcher")

    def _next_refusal(self, now: float) -> float:
        """Seconds until the next socket starts refusing, at most SWEEP_EVERY. The caller holds the lock."""
        due = [outages.refuse_in(h.outage, h.pidfd is not None, now, self.grace) for h in self.held.values()]
        return min([SWEEP_EVERY, *(d for d in due if d)])

    def _refuse(self, now: float) -> None:
        """Close what waits on each socket that has had no vassal for GRACE seconds: nginx then retries a GET
        on another backend or answers 502 at once, instead of waiting for a vassal that may never come.
        The caller holds the lock."""
        for name, held in self.held.items():
            if outages.refuse_in(held.outage, held.pidfd is not None, now, self.grace) != 0.0:
                continue
            if not held.refusing:
                held.refusing = True
                down = now - (held.outage.down_since or now)
                log.warning("vassal %s down for %.1f s: refusing what waits on its socket until it is back", name, down)
            refused = processes.refuse_pending(held.sock)  # the request nginx wrote is unread: it gets a reset
            if refused:
                log.info("refused %d connection(s) waiting on the socket of %s", refused, name)

    def sweep(self) -> list[str]:
        """Release the sockets whose vassal file is gone and whose vassal has exited; returns their names.
        The caller holds the lock."""
        gone = [
            name
            for name, held in self.held.items()
            if held.pidfd is None and not self.layout.vassal_file(name).exists()
        ]
        for name in gone:
            self._release(name)
            log.info("closed the socket of removed vassal %s", name)
        return gone

    def _answer(self) -> None:
        assert self.control is not None
        try:
            conn, _ = self.control.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            try:
                name = conn.recv(MAX_NAME + 1).decode("utf-8", "surrogateescape")
                if not valid_name(name) or not self.layout.vassal_file(name).exists():
                    conn.sendall(b"no such vassal")
                    return
                pid = _peer_pid(conn)
                sock = self.socket_for(name)
                try:
                    pidfd = os.pidfd_open(pid)
                except OSError:
                    pidfd = None  # gone already: the sweep sees it
                with self.lock:
                    self._taken(name, pidfd)
                socket.send_fds(conn, [b"ok"], [sock.fileno()])
            except OSError as e:
                log.warning("socket holder: could not answer a launcher: %s", e)

    def _taken(self, name: str, pidfd: int | None) -> None:
        """A launcher (the vassal master to be, `pidfd`) took the socket of `name`. The caller holds the lock."""
        held = self.held.get(name)
        if held is None:
            if pidfd is not None:
                os.close(pidfd)
            return
        if held.pidfd is not None:
            os.close(held.pidfd)
        held.pidfd, now, outage = pidfd, time.monotonic(), held.outage
        if outage.down_since is not None and (outage.launched_at or 0.0) <= outage.down_since:
            # The first launch since the last vassal exited: how long the socket had none (the respawn).
            took = now - outage.down_since
            log.info("vassal %s: a new vassal took its socket %.2f s after the last one exited", name, took)
        held.outage, held.refusing = outages.launched(outage, now), False


def _peer_pid(conn: socket.socket) -> int:
    creds = array.array("i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return creds[0]
