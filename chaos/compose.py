"""The optional row: a container of the compose cluster (docker-compose.yml) killed -9 from the host, as an
OOM kill or a crash of its PID 1 does, so the engine's restart policy (not `docker kill`, which counts as a
manual stop) brings it back. It alternates the emperor container (every backend) and the gateway (nginx
and the control plane). Skipped, with its reason, without an engine or the images of `make images`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

from chaos.parts import TWO, Part
from harness.cluster import copy_tree, vassal_text
from harness.ports import free_port
from harness.wait import WaitTimeout, wait_for

REPO = Path(__file__).resolve().parent.parent
IMAGES = ("fleet-emperor:latest", "fleet-gateway:latest")  # what `make images` builds
UP_TIMEOUT = 180.0
KEY = "container"
LABEL = "a compose container (emperor, gateway in turn)"


def _run(argv: list[str], timeout: float = 60.0, cwd: Path | None = None, env: dict | None = None):
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, stdin=subprocess.DEVNULL
    )


def problem() -> str | None:
    """Why the container row cannot be measured here, or None."""
    try:
        if _run(["docker", "info"], 30).returncode != 0:
            return "no engine"
        if _run(["docker", "compose", "version"], 30).returncode != 0:
            return "no `docker compose`"
        missing = [i for i in IMAGES if _run(["docker", "image", "inspect", i], 30).returncode != 0]
    except (OSError, subprocess.SubprocessError):
        return "no engine"
    return f"no images ({', '.join(missing)}): run `make images`" if missing else None


def skipped(reason: str) -> dict:
    return {"part": KEY, "label": LABEL, "skipped": reason}


class Compose:
    """A compose project running a copy of the tree on a free port: what chaos.run needs of a cluster."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.project = f"fleetchaos{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "FLEET_PORT": str(self.port),
            "FLEET_ADMIN_PORT": str(free_port()),
            "FLEET_IMAGE_TAG": "latest",
        }
        self.kills = 0

    def compose(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return _run(["docker", "compose", "-p", self.project, *args], timeout, self.root, self.env)

    def container(self, service: str) -> dict:
        cid = self.compose("ps", "-q", service).stdout.strip()
        return json.loads(_run(["docker", "inspect", cid], 30).stdout)[0]

    def state(self) -> dict:
        out = self.compose("exec", "-T", "gateway", "cat", "/srv/fleet/run/state.json", timeout=30)
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def fleet(self, *args: str, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
        return self.compose("exec", "-T", "gateway", "fleet", *args, timeout=timeout)


def _kill(c: Compose) -> object:
    service = ("emperor", "gateway")[c.kills % 2]
    c.kills += 1
    info = c.container(service)
    os.kill(int(info["State"]["Pid"]), signal.SIGKILL)  # the container's PID 1 (its init), from the host
    return (service, info["State"]["StartedAt"])


def _replaced(c: Compose, before: object) -> bool:
    service, started = before  # type: ignore[misc]
    state = c.container(service)["State"]
    return bool(state["Running"]) and state["StartedAt"] != started


NOTE = "engine's restart policy; state.json read through `docker compose exec` (~0.5 s a read)"
PART = Part(KEY, LABEL, TWO, _kill, _replaced, note=NOTE)  # type: ignore[arg-type]


def chaos_container(parent: Path, profile, log: Callable[[str], None]) -> dict:
    from chaos.run import all_routed, run_part

    why = problem()
    if why:
        log(f"  {KEY}: skipped: {why}")
        return skipped(why)
    root = copy_tree(REPO, parent / "compose")
    for old in (root / "vassals").glob("*.ini"):
        old.unlink()
    for name in TWO:
        (root / "vassals" / f"{name}.ini").write_text(vassal_text(2))
    c = Compose(root)
    try:
        up = c.compose("up", "--detach", "--no-build", timeout=UP_TIMEOUT)
        if up.returncode != 0:
            raise RuntimeError(f"compose up exited {up.returncode}: {up.stderr[-300:]}")
        wait_for(
            "every backend routed in the compose cluster",
            lambda: all_routed(c, TWO),
            UP_TIMEOUT,
            0.5,
            ignore=(OSError, ValueError, KeyError, subprocess.SubprocessError),
        )
        images = {i: _run(["docker", "image", "inspect", "-f", "{{.Id}}", i], 30).stdout.strip() for i in IMAGES}
        row = run_part(c, PART, profile, log)  # type: ignore[arg-type]
        row["images"] = images
        return row
    except (RuntimeError, WaitTimeout, OSError, subprocess.SubprocessError) as e:
        log(f"  {KEY}: failed: {type(e).__name__}: {str(e)[:300]}")
        return {"part": KEY, "label": LABEL, "error": f"{type(e).__name__}: {str(e)[:300]}"}
    finally:
        c.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=180)
