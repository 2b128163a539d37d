"""Form is enforced in CI: ruff lint and ruff format (configuration in pyproject.toml)."""

import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _ruff() -> list[str]:
    exe = pathlib.Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ruff")
    if found is None:  # pragma: no cover - ruff is in the test extras
        pytest.fail("ruff is not installed (it is in the test extras: pip install -e '.[test]')")
    return [found]


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]], ids=str)
def test_ruff(command):
    out = subprocess.run(_ruff() + command, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, f"ruff {' '.join(command)} failed:\n{out.stdout}\n{out.stderr}"


def test_no_module_over_500_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "geotrip").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 500
    }
    assert not long, f"modules over 500 lines (split them by topic): {long}"
