"""Helpers for the end-to-end tier: a copy of the repository run as a docker compose project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from harness.ports import free_port
from tests.e2e.published import Published

REPO = Path(__file__).resolve().parents[2]
# Top-level entries of the checkout that a cluster copy must not carry: state, caches, history.
NOT_COPIED = {".git", ".venv", "run", ".pytest_cache", ".ruff_cache", "build"}
NOT_COPIED |= {".mypy_cache", ".import_linter_cache", ".grimp_cache"}  # make lint's
UP_DEADLINE = 180.0  # compose up to every container healthy and a first 200

# The two clients docker-compose.yml must work with: Compose v2 (the docker CLI plugin) and Debian's
# docker-compose 1.29. bin/start-docker installs both.
CLIENTS = {
    "compose-v2": (["docker", "compose"], "2."),
    "docker-compose-v1": (["docker-compose"], "1."),
}


def docker_problem() -> str | None:
    """Why the e2e tier cannot run here (no docker client, no engine), or None."""
    if shutil.which("docker") is None:
        return "no docker client on PATH (bin/start-docker installs Debian's docker.io)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        reason = info.stderr.strip()[:300]
        return f"no Docker engine reachable (`docker info` failed; start one with bin/start-docker): {reason}"
    return None


def client_problem(client: str) -> str | None:
    """Why compose client `client` (a key of CLIENTS) cannot be used here, or None.

    $FLEET_COMPOSE (e.g. `docker-compose`) restricts the tests to the client that it names.
    """
    command, major = CLIENTS[client]
    chosen = os.environ.get("FLEET_COMPOSE")
    if chosen and chosen.split() != command:
        return f"FLEET_COMPOSE={chosen} selects another client than `{' '.join(command)}`"
    if shutil.which(command[0]) is None:
        return f"`{' '.join(command)}` is not installed (bin/start-docker installs it)"
    proc = subprocess.run([*command, "version", "--short"], capture_output=True, text=True, timeout=30)
    version = proc.stdout.strip().lstrip("v")
    if proc.returncode != 0 or not version.startswith(major):
        return f"`{' '.join(command)}` is not Compose {major}x here (bin/start-docker installs it): {version}"
    return None


def copy_tree(dest: Path) -> Path:
    """Copy the checkout to `dest`, leaving out state, caches and history."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n == "__pycache__" or n.endswith(".egg-info")}
        if Path(folder) == REPO:
            skipped |= NOT_COPIED & set(names)
        return skipped

    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


class ComposeCluster(Published):
    """One compose project running a copy of the tree; all commands run in that copy."""

    def __init__(self, root: Path, project: str, port: int, compose: list[str]):
        self.project = project
        self.compose_cmd = compose
        # Images tagged for this cluster alone: concurrent runs from other trees (another engineer's
        # `make test`) retag fleet-*:latest, and compose would start their code instead of this copy's.
        self.image_tag = project
        self.admin_port = free_port()
        env = {
            **os.environ,
            "FLEET_PORT": str(port),
            "FLEET_ADMIN_PORT": str(self.admin_port),
            "FLEET_IMAGE_TAG": self.image_tag,
        }
        super().__init__(root, port, env)
        self.down_done = False

    @property
    def vassals(self) -> Path:
        return self.root / "vassals"

    def compose(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [*self.compose_cmd, "-p", self.project, *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"`{' '.join(proc.args)}` exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def logs(self) -> str:
        try:
            proc = self.compose("logs", "--no-color", "--tail", "1000", check=False, timeout=60)
        except subprocess.TimeoutExpired:
            return "(compose logs timed out)"
        return proc.stdout + proc.stderr

    def logs_tail(self, lines: int) -> str:
        """The last `lines` lines of each service's log: what a failure message can carry whole."""
        tails = []
        for service in ("gateway", "emperor"):
            proc = self.compose("logs", "--no-color", "--tail", str(lines), service, check=False, timeout=60)
            tails.append(f"--- {service}, last {lines} lines ---\n{proc.stdout}{proc.stderr}")
        return "\n".join(tails)

    def container(self, service: str) -> dict:
        """`docker inspect` of the service's container."""
        cid = self.compose("ps", "--all", "-q", service).stdout.strip()
        assert cid, f"no container for service {service}"
        out = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)[0]

    def exited(self) -> list[str]:
        """Containers of this project that have stopped running."""
        out = subprocess.run(
            [
                "docker",
                "ps",
                "-a",
                "--format",
                "{{.Names}}: {{.Status}}",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
                "--filter",
                "status=exited",
            ],
            capture_output=True,
            text=True,
        )
        return out.stdout.split("\n")[:-1]

    def first_answer(self) -> dict | None:
        """`answer()`, but fail at once if a container has exited: it will not come back."""
        exited = self.exited()
        if exited:
            raise AssertionError(f"containers exited while starting: {exited}")
        return self.answer()

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of this project that still exist."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, cmd in {
            "containers": ["docker", "ps", "-a", "--format", "{{.Names}}", "--filter", label],
            "networks": ["docker", "network", "ls", "--format", "{{.Name}}", "--filter", label],
            "volumes": ["docker", "volume", "ls", "--format", "{{.Name}}", "--filter", label],
        }.items():
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
            # Also by name, in case a client did not label something.
            by_name = subprocess.run(
                [*cmd[:-2], "--filter", f"name={self.project}_"], capture_output=True, text=True, check=True
            ).stdout.split()
            found[kind] = sorted(set(out) | set(by_name))
        return found

    def build_images(self) -> None:
        """Only the two targets that remove_images() untags."""
        self.build("emperor", "gateway")

    def down(self) -> subprocess.CompletedProcess:
        self.down_done = True
        return self.compose("down", "--volumes", "--remove-orphans", "--timeout", "30", timeout=180)

    def remove_images(self) -> None:
        """Untag this cluster's images (their layers stay in the build cache)."""
        images = [f"fleet-{target}:{self.image_tag}" for target in ("emperor", "gateway")]
        subprocess.run(["docker", "rmi", "--no-prune", *images], capture_output=True, timeout=120)
