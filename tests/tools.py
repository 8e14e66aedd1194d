"""Outside tools for the operator's-view tests: headless Chromium (selenium + chromedriver) and Prometheus,
Debian's packages, each started on its own and stopped by pid.

Without them a test is skipped with the reason, except under CI=true (`.ci/run` installs them), where
it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from harness.ports import free_port
from harness.procs import descendants, kill, stop_group

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # as root (CI), Chromium does not start with its sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)


def need(*tools: str) -> None:
    """Skip (fail under CI=true) unless every tool is on PATH."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        reason = f"{', '.join(missing)} not installed: apt-get install -y chromium chromium-driver prometheus"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


@contextmanager
def chromium(workdir: Path, home: Path | None = None) -> Iterator:
    """A selenium driver for a fresh headless Chromium; chromedriver and every browser process it started
    are gone afterwards. `home`: the browser's HOME (Chromium trusts the CAs of HOME/.pki/nssdb)."""
    need("chromium", "chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(dir=workdir)}"):
        options.add_argument(flag)
    env = {**os.environ, "HOME": str(home)} if home is not None else None
    service = Service(
        executable_path=shutil.which("chromedriver"), log_output=str(workdir / "chromedriver.log"), env=env
    )
    driver = webdriver.Chrome(options=options, service=service)
    started = [service.process.pid, *descendants(service.process.pid)]
    try:
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            kill(started)  # what quit() did not end (nothing, normally)


@contextmanager
def prometheus(workdir: Path, targets: list[str]) -> Iterator[str]:
    """A Prometheus scraping `targets` every second, with a temporary config and storage; yields its
    query API URL. Stopped by pid (SIGTERM, then SIGKILL)."""
    need("prometheus")
    port = free_port()
    config = workdir / "prometheus.yml"
    quoted = ", ".join(f"'{t}'" for t in targets)
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: fleet\n    static_configs: [{{targets: [{quoted}]}}]\n"
    )
    argv = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'prometheus-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with open(workdir / "prometheus.log", "w") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}/api/v1/query"
    finally:
        stop_group(proc, signal.SIGTERM, 20)


def query(api: str, expr: str) -> list[dict]:
    """The result of a Prometheus instant query (empty while it has nothing, or is not up yet)."""
    try:
        doc = requests.get(api, params={"query": expr}, timeout=5).json()
    except (requests.RequestException, ValueError):
        return []
    return doc["data"]["result"] if doc.get("status") == "success" else []
