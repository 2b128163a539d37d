"""Provenance records carry no absolute path of the machine that made them."""

import json
import os
import pathlib

import geotrip as gt
from geotrip._provenance import portable_command

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_portable_command_names_python_m_geotrip_as_geotrip():
    assert portable_command(["/venv/src/geotrip/__main__.py", "figures"]) == ["geotrip", "figures"]
    assert portable_command(["/x/other/__main__.py"]) == ["__main__.py"]


def test_portable_command_strips_machine_paths():
    argv = [
        "/home/someone/.venv/bin/geotrip",
        "figures",
        f"--out={ROOT / 'figures'}",
        str(ROOT / "runs" / "a.json"),
        "/elsewhere/data/emb.npy",
        "--seed",
        "3",
    ]
    assert portable_command(argv) == [
        "geotrip",
        "figures",
        "--out=figures",
        "runs/a.json",
        "emb.npy",
        "--seed",
        "3",
    ]


def test_provenance_record_has_no_absolute_path(tmp_path):
    rec = gt.provenance(seed=1, command=[os.path.abspath("prog"), str(tmp_path / "x")])
    text = json.dumps(rec)
    assert str(ROOT) not in text and str(tmp_path) not in text
    assert "cwd" not in rec
    assert rec["seed"] == 1 and rec["command"] == ["prog", "x"]


def test_provenance_record_is_stable_and_run_details_are_separate():
    a = gt.provenance(seed=0, command=["geotrip", "figures"], extra={"n": 1})
    b = gt.provenance(seed=0, command=["geotrip", "figures"], extra={"n": 1})
    assert a == b  # nothing that changes from one run to the next
    assert {"time_utc", "run"}.isdisjoint(a) and "cpu_count" not in a["platform"]
    assert set(a) == {"command", "seed", "versions", "device", "git", "platform", "parameters"}
    assert {"backend", "kinds", "x64", "xla_flags"} <= set(a["device"])
    run = gt.provenance(seed=0, command=["x"], run=True)["run"]
    assert {"time_utc", "host", "cpu_count", "cwd", "argv", "head"} <= set(run)
    assert run["cpu_count"] == os.cpu_count()


def test_git_revision_is_the_last_commit_of_the_package_source():
    import shutil
    import subprocess

    from geotrip._provenance import git_revision, source_digest

    rev = git_revision()
    assert set(rev) == {"revision", "dirty", "source_digest"}
    assert rev["source_digest"] == source_digest() and len(rev["source_digest"]) == 16
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        assert rev["revision"] is None
        return
    git = ["git", "-C", str(ROOT)]
    last = subprocess.run(
        [*git, "log", "-1", "--format=%H", "--", "geotrip", "pyproject.toml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert rev["revision"] == last  # not HEAD: commits of figures or docs leave it unchanged
    status = subprocess.run(
        [*git, "status", "--porcelain", "--", "geotrip", "pyproject.toml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert rev["dirty"] is bool(status)


def test_source_digest_follows_the_content(tmp_path, monkeypatch):
    from geotrip import _provenance

    a = tmp_path / "geotrip" / "a.py"
    a.parent.mkdir()
    a.write_text("x = 1\n")
    monkeypatch.setattr(_provenance, "_source_files", lambda: [a])
    monkeypatch.setattr(_provenance, "_ROOT", tmp_path)
    first = _provenance.source_digest()
    assert _provenance.source_digest() == first
    a.write_text("x = 2\n")
    assert _provenance.source_digest() != first
