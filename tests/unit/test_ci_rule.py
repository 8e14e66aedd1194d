"""Under CI=true a skipped test fails the run (the hooks in tests/conftest.py); without CI it is only skipped.

Each case runs pytest in a subprocess on a small test file in a temporary folder, with tests/conftest.py
loaded as a plugin, so what is proven is the conftest the suite itself runs with.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

A_SKIPPED_TEST = """
import pytest

def test_passes():
    pass

def test_skips():
    pytest.skip("the tool is not installed")

@pytest.mark.skipif(True, reason="not on this machine")
def test_skipped_by_a_mark():
    pass

@pytest.fixture
def engine():
    pytest.skip("no engine")

def test_skipped_by_its_fixture(engine):
    pass
"""

A_SKIPPED_MODULE = """
import pytest

pytest.skip("the whole module needs a tool", allow_module_level=True)

def test_never_collected():
    pass
"""

AN_EXPECTED_FAILURE = """
import pytest

@pytest.mark.xfail(strict=True, reason="a known bug")
def test_known_bug():
    assert False
"""


def run_pytest(tmp_path: Path, source: str, ci: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_case.py").write_text(source)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's settings: no testpaths, no markers
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    env["PYTHONPATH"] = str(ROOT)
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-rA"]
    command += ["-c", str(tmp_path / "pytest.ini"), str(tmp_path)]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_under_ci_every_kind_of_skip_fails_the_run(tmp_path):
    result = run_pytest(tmp_path, A_SKIPPED_TEST, ci=True)
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    # A skip in setup (a mark, a fixture) becomes an error, as any failure in setup does.
    assert "1 failed, 1 passed, 2 errors" in result.stdout, result.stdout
    for reason in ("the tool is not installed", "not on this machine", "no engine"):
        assert f"CI=true: a skipped test fails the run (Skipped: {reason})" in result.stdout, result.stdout


def test_without_ci_a_skip_is_only_a_skip(tmp_path):
    result = run_pytest(tmp_path, A_SKIPPED_TEST, ci=False)
    assert result.returncode == pytest.ExitCode.OK, result.stdout + result.stderr
    assert "1 passed, 3 skipped" in result.stdout, result.stdout


def test_under_ci_a_module_skipped_at_collection_fails_the_run(tmp_path):
    result = run_pytest(tmp_path, A_SKIPPED_MODULE, ci=True)
    assert result.returncode != pytest.ExitCode.OK, result.stdout + result.stderr
    assert "CI=true: a skipped module fails the run" in result.stdout, result.stdout
    assert run_pytest(tmp_path, A_SKIPPED_MODULE, ci=False).returncode == pytest.ExitCode.NO_TESTS_COLLECTED


def test_under_ci_an_expected_failure_is_not_a_skip(tmp_path):
    result = run_pytest(tmp_path, AN_EXPECTED_FAILURE, ci=True)
    assert result.returncode == pytest.ExitCode.OK, result.stdout + result.stderr
    assert "1 xfailed" in result.stdout, result.stdout
