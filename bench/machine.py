"""What the numbers were measured on: CPU, kernel, load, and the versions of everything in the path."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess

from bench.nginx import NGINX
from bench.wrk import WRK
from harness.evidence import cpu_model, memory_gib


def _out(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def describe(uwsgi: str, gunicorn: str | None) -> dict:
    nginx_v = _out([NGINX, "-v"])
    wrk_v = _out([WRK, "-v"]) if WRK else ""
    versions = {
        "python": platform.python_version(),
        "nginx": nginx_v.split("/", 1)[-1] if "/" in nginx_v else nginx_v,
        "uwsgi": _out([uwsgi, "--version"]),
        "wrk": (re.search(r"wrk\s+(\S+)", wrk_v) or [None, ""])[1],
    }
    if gunicorn:
        versions["gunicorn"] = _out([gunicorn, "--version"]).replace("gunicorn (version ", "").rstrip(")")
    with_versions = {}
    for mod in ("flask", "matplotlib", "granian"):
        try:
            from importlib.metadata import version

            with_versions[mod] = version(mod)
        except Exception:
            pass
    versions.update(with_versions)
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model() or "unknown",
        "memory_gib": memory_gib() or 0.0,
        "kernel": platform.release(),
        "os": _os_name(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()
