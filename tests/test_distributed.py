"""Sweeps, searches and collapse runs over several processes (jax.distributed, two local CPU
processes), streaming summaries and resuming after an interruption."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import geotrip as gt

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _numbers(summary: dict) -> dict:
    """The summary without what legitimately differs between runs (timings, provenance)."""
    out = {k: v for k, v in summary.items() if k != "provenance"}
    out["by_dim"] = {
        d: {k: v for k, v in e.items() if k not in ("seconds", "configs_per_second")}
        for d, e in summary["by_dim"].items()
    }
    return out


def _launch(args, tmp_path, name, devices=1, command="sweep", cache=False):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    if cache:  # the test session's compilation cache and XLA flags (root conftest.py)
        flags = env.get("XLA_FLAGS", "")
    else:
        env["GEOTRIP_NO_COMPILATION_CACHE"] = "1"
        flags = ""
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    log = open(tmp_path / f"{name}.log", "w")
    cmd = [sys.executable, "-m", "geotrip", command, *args, "--no-progress"]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log


def _stop(procs):
    """Kill what still runs (a failed or hung test) and close the logs."""
    for p, log in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
        log.close()


def _run_one_then_two(command, base, tmp_path, out_name, timeout=240, devices=1):
    """Run ``geotrip COMMAND`` alone (``one``), then as two processes joined on a free
    loopback port (``p0``, ``p1``) which find the programs ``one`` compiled in the session's
    compilation cache; every process is killed if any fails or runs too long."""
    procs = []
    dist = ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    try:
        args = [*base, "--out", str(tmp_path / "one" / out_name)]
        procs.append(_launch(args, tmp_path, "one", command=command, cache=True))
        procs[0][0].wait(timeout=timeout)
        for i in range(2):
            args = [*base, "--out", str(tmp_path / f"p{i}" / out_name), *dist]
            args += ["--process-id", str(i)]
            procs.append(
                _launch(args, tmp_path, f"p{i}", devices=devices, command=command, cache=True)
            )
        for p, _ in procs:
            p.wait(timeout=timeout)
    finally:
        _stop(procs)
    logs = {f.stem: f.read_text()[-2000:] for f in tmp_path.glob("*.log")}
    assert [p.returncode for p, _ in procs] == [0, 0, 0], logs
    p1 = tmp_path / "p1"
    assert not p1.exists() or not any(p1.rglob("*")), "process 1 wrote files"


# By default the three processes compile with the test session's XLA flags (root
# conftest.py; ~20 s instead of ~45 s on the shared 2-core machine); the same run at
# XLA's default flags, as a user runs it, is the slow variant.
@pytest.mark.parametrize("session_flags", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_two_processes_match_one(tmp_path, session_flags):
    """The issue's acceptance run: two processes joined on a loopback port write the
    single-process summary.json (numbers bitwise equal); process 1 writes nothing. The two
    processes have two CPU devices each and another chunk size: the numbers do not depend on
    the chunk size, the device count or the process count."""
    base = ["--family", "uniform", "--dim", "16", "--samples", "100000", "--seed", "3"]
    port = _free_port()
    procs = []
    try:
        procs.append(
            _launch([*base, "--out", str(tmp_path / "one")], tmp_path, "one", cache=session_flags)
        )
        for i in range(2):
            dist = ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2"]
            args = [*base, "--out", str(tmp_path / f"p{i}"), *dist, "--process-id", str(i)]
            args += ["--chunk-size", "30000"]
            procs.append(_launch(args, tmp_path, f"p{i}", devices=2, cache=session_flags))
        for p, _ in procs:
            p.wait(timeout=240)
    finally:
        _stop(procs)
    logs = {f.stem: f.read_text()[-2000:] for f in tmp_path.glob("*.log")}
    assert all(p.returncode == 0 for p, _ in procs), logs
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    two = json.loads((tmp_path / "p0" / "summary.json").read_text())
    assert not (tmp_path / "p1").exists() or not any((tmp_path / "p1").iterdir())
    assert two["provenance"]["parameters"]["processes"] == 2
    assert two["provenance"]["device"]["count"] == 4
    assert _numbers(two) == _numbers(one)
    assert one["by_dim"]["16"]["num"] == 100000


@pytest.mark.slow  # about 20 s on 2 cores (three processes); the sweep pair runs by default
def test_search_two_processes_match_one(tmp_path):
    """geotrip search with its restarts split over two processes writes the single-process
    certificate (every field but the run time and the provenance); process 1 writes nothing.
    A small problem so that it stays cheap; 7 restarts split unevenly (4 + 3, the second
    block padded with a copy of restart 6, dropped on gathering)."""
    base = ["-k", "2", "-d", "3", "--restarts", "7", "--steps", "20", "--seed", "4"]
    _run_one_then_two("search", base, tmp_path, "cert.json")
    one = json.loads((tmp_path / "one" / "cert.json").read_text())
    two = json.loads((tmp_path / "p0" / "cert.json").read_text())
    assert two["provenance"]["parameters"]["processes"] == 2
    assert one["provenance"]["parameters"]["processes"] == 1
    for c in (one, two):
        del c["provenance"]
        c["search"].pop("seconds", None)
    assert two == one
    assert one["search"]["restarts"] == 7


def _csv_without(path, column):
    import csv

    with path.open(newline="") as fh:
        return [{k: v for k, v in r.items() if k != column} for r in csv.DictReader(fh)]


@pytest.mark.slow
def test_collapse_two_processes_match_one(tmp_path):
    """geotrip collapse with its cells dealt over two processes (the tiny preset's two
    cells: one each) writes the single-process rows (but for the per-cell ``seconds``
    column), tables, summary and histories; process 1 writes nothing."""
    base = ["--preset", "tiny", "--seeds", "2", "--no-figures"]
    _run_one_then_two("collapse", base, tmp_path, "run", timeout=300)
    one, two = tmp_path / "one" / "run", tmp_path / "p0" / "run"
    rows = _csv_without(one / "runs.csv", "seconds")
    assert len(rows) == 2 * 3 * 2 * 2  # cells x distances x seeds x spreads
    assert _csv_without(two / "runs.csv", "seconds") == rows
    for name in ("phase.csv", "phase_by_spread.csv", "summary.json"):
        assert (two / name).read_bytes() == (one / name).read_bytes(), name
    d1, d2 = (json.loads((d / "done.json").read_text()) for d in (one, two))
    assert d2["cells"] == d1["cells"] and d2["settings"] == d1["settings"]
    for h in sorted((one / "history").glob("*.npz")):
        a, b = np.load(h), np.load(two / "history" / h.name)
        assert sorted(a) == sorted(b), h.name
        for k in a:  # bit for bit (NaN included)
            assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), (h.name, k)
    prov = json.loads((two / "provenance.json").read_text())["parameters"]
    assert prov["processes"] == 2 and prov["cells_done"] == d1["cells"]


@pytest.mark.slow
def test_collapse_refusal_reaches_every_process(tmp_path):
    """Process 0 refuses its folder (a run with other settings); the refusal travels to
    process 1 through the collective, so both exit 2 in one line instead of waiting."""
    import dataclasses

    from geotrip.train import COLLAPSE_PRESETS
    from geotrip.train._rundir import record_cells

    spec = dataclasses.replace(COLLAPSE_PRESETS["tiny"], n_seeds=2)
    (tmp_path / "p0" / "run").mkdir(parents=True)
    settings = {"spec": spec.to_json(), "seed0": 0, "dtype": "float32"}
    record_cells(tmp_path / "p0" / "run", settings, [])
    dist = ["--coordinator", f"127.0.0.1:{_free_port()}", "--num-processes", "2"]
    procs = []
    try:
        for i in range(2):
            args = ["--preset", "tiny", "--out", str(tmp_path / f"p{i}" / "run"), *dist]
            procs.append(
                _launch([*args, "--process-id", str(i)], tmp_path, f"p{i}", command="collapse")
            )
        for p, _ in procs:
            p.wait(timeout=120)
    finally:
        _stop(procs)
    for i, (p, _) in enumerate(procs):
        text = (tmp_path / f"p{i}.log").read_text()
        assert p.returncode == 2, text
        assert "--seeds: 2 recorded, 3 now" in text and "Traceback" not in text


class _Stop(Exception):
    pass


def test_resume_after_interruption_is_identical(tmp_path):
    kw = dict(dims=(3, 5), samples=1000, seed=2, chunk_size=256, progress=False)
    ref = gt.run_sweep("uniform", out=tmp_path / "ref", **kw)

    def stop(dim, done, total):
        if dim == 5 and done >= 512:
            raise _Stop  # as a SIGINT would, after the checkpoint of that chunk

    with pytest.raises(_Stop):
        gt.run_sweep("uniform", out=tmp_path / "run", checkpoint_seconds=0, on_chunk=stop, **kw)
    assert (tmp_path / "run" / "checkpoint.npz").exists()
    assert not (tmp_path / "run" / "summary.json").exists()
    done = gt.run_sweep("uniform", out=tmp_path / "run", resume=True, **kw)
    assert _numbers(done) == _numbers(ref)
    assert done["provenance"]["parameters"]["resumed"] is True
    with pytest.raises(ValueError, match="other settings"):
        gt.run_sweep("uniform", out=tmp_path / "run", resume=True, **{**kw, "seed": 5})


def test_streaming_summary_against_exact():
    """Streaming summaries: exact counts/shares/extremes, quantiles within 0.005 degrees,
    the same numbers whatever the chunking."""
    from geotrip.sweeps._streaming import QUANTILE_ERROR_DEG, StreamingSummary

    rng = np.random.default_rng(0)
    th = rng.uniform(0, np.pi, 2000)
    th[::7] = np.nan
    res = {
        "raw/joint": th,
        "defined/raw/joint": np.isfinite(th),
        "active/A": rng.uniform(size=2000) < 0.3,
        "config/theta_ap": rng.uniform(0, np.pi, 2000),
    }
    exact = gt.summarize(res)
    got = []
    for cs in (64, 320, 2000):
        s = StreamingSummary()
        for a in range(0, 2000, cs):
            s.update({k: v[a : a + cs] for k, v in res.items()})
        got.append(s.result())
    assert got[0] == got[1] == got[2]
    g, e = got[0]["raw/joint"], exact["raw/joint"]
    assert g["count"] == e["count"] and g["share_above"] == e["share_above"]
    assert g["histogram"]["counts"] == e["histogram"]["counts"]
    assert g["mean"] == pytest.approx(e["mean"], rel=1e-12)
    for q, v in e["quantiles"].items():
        assert abs(g["quantiles"][q] - v) <= QUANTILE_ERROR_DEG + 1e-12, q
    assert got[0]["active/A"] == exact["active/A"]
    tol = np.pi / 36000 + 1e-12
    for q, v in exact["config/theta_ap"]["quantiles"].items():
        assert abs(got[0]["config/theta_ap"]["quantiles"][q] - v) <= tol


def test_distributed_settings_errors(monkeypatch):
    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(var, raising=False)
    assert gt.init_distributed() == {"process_id": None, "num_processes": 1, "coordinator": None}
    with pytest.raises(ValueError, match="needs the coordinator"):
        gt.init_distributed("127.0.0.1:1234")
    with pytest.raises(ValueError, match="HOST:PORT"):
        gt.init_distributed("localhost", 2, 0)
    with pytest.raises(ValueError, match="process_id"):
        gt.init_distributed("127.0.0.1:1234", 2, 2)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES"):
        gt.init_distributed()


def test_cli_distributed_settings_errors_are_one_line(tmp_path, capsys, monkeypatch):
    """search and collapse take the sweep's distributed options; a bad setting is one line
    with exit status 2, before any computation or file."""
    from geotrip.cli import main

    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(var, raising=False)
    dist = ["--coordinator", "127.0.0.1:1", "--num-processes", "2", "--process-id", "2"]
    for cmd in (
        ["search", "--out", str(tmp_path / "o" / "c.json")],
        ["collapse", "--out", str(tmp_path / "o")],
    ):
        assert main([*cmd, *dist]) == 2
        err = capsys.readouterr().err.strip()
        assert "process_id must be in [0, 2), got 2" in err and "\n" not in err
        assert main([*cmd, "--coordinator", "127.0.0.1:1"]) == 2
        assert "needs the coordinator" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
