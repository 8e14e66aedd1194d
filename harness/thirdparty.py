"""Real third-party Flask apps for the tests: the examples in Flask's own source distribution.

`examples/tutorial` (flaskr: register, log in, write posts; forms, sessions, redirects, url_for, a
stylesheet, SQLite) and `examples/javascript` (js_example). The sdist of the installed Flask version is
fetched once with pip (`pip download flask==X --no-binary :all: --no-deps`) into .cache/thirdparty/ (ignored
by git) and extracted there; later calls reuse it.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

CACHE = Path(__file__).resolve().parent.parent / ".cache" / "thirdparty"


def flask_examples(cache: Path = CACHE) -> Path:
    """The `examples` folder of the installed Flask's source distribution (downloaded once)."""
    version = importlib.metadata.version("flask")
    folder = cache / f"flask-{version}"
    if (folder / "examples" / "tutorial" / "flaskr").is_dir():
        return folder / "examples"
    cache.mkdir(parents=True, exist_ok=True)
    archive = next(cache.glob(f"flask-{version}.tar.gz"), None)
    if archive is None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                f"flask=={version}",
                "--no-binary",
                ":all:",
                "--no-deps",
                "-d",
                str(cache),
                "-q",
            ],
            check=True,
            timeout=300,
        )
        archive = next(cache.glob(f"flask-{version}.tar.gz"))
    staging = cache / f".flask-{version}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/examples/" in m.name and (m.isfile() or m.isdir())]
        tar.extractall(staging, members=members, filter="data")
    shutil.rmtree(folder, ignore_errors=True)
    next(staging.iterdir()).rename(folder)  # the archive's own top folder, flask-X/
    shutil.rmtree(staging, ignore_errors=True)
    return folder / "examples"
