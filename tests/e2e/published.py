"""What the compose and the Swarm tiers share: a copy of the tree whose images are built by
docker/build-images and whose cluster answers on a port published on the host's loopback."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import requests

BUILD_TIMEOUT = 900.0  # cold: debootstrap + the image builds (uWSGI compiles)


class Published:
    def __init__(self, root: Path, port: int, env: dict[str, str]):
        self.root, self.port, self.env = root, port, env
        self.url = f"http://127.0.0.1:{port}"

    def build(self, *targets: str) -> None:
        """Build `targets` from this copy of the tree (as `make images` does); fail the test if that fails."""
        t0 = time.monotonic()
        argv = [str(self.root / "docker" / "build-images"), *targets]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
        assert done.returncode == 0, f"docker/build-images failed:\n{done.stdout}\n{done.stderr}"
        print(f"\nimages built in {time.monotonic() - t0:.1f}s")  # warm, from the build cache in seconds

    def get(self, path: str = "/", timeout: float = 10.0) -> requests.Response:
        """One request on a new connection, as a fresh client would make it."""
        return requests.get(self.url + path, headers={"Connection": "close"}, timeout=timeout)

    def answer(self) -> dict | None:
        """The JSON of one successful `GET /`, or None if the cluster does not answer 200 (yet)."""
        try:
            resp = self.get("/")
        except requests.RequestException:
            return None
        return resp.json() if resp.status_code == 200 else None
