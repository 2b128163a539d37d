"""The latency suite: fresh-process function timings, CLI runs with peak memory, comparisons."""

import json

import numpy as np
import pytest

from geotrip.benchmarks import _latency, load_suites


@pytest.mark.slow  # fresh processes, cold and warm: ~15 s; run with -m slow
def test_suite_runs_with_tiny_sizes():
    lines = []
    res = _latency.run(
        log=lines.append, sizes={"functions": ("angle",), "commands": ("verify",), "reps": 3}
    )
    json.dumps(res)
    assert res["suite"] == "latency" and "latency" in load_suites()
    (f,) = res["functions"]
    for phase in ("cold", "warm"):
        r = f[phase]
        assert 0 < r["repeat_ms_min"] <= r["repeat_ms_median"]
        assert r["first_call_s"] > 0 and r["jit_repeat_ms_median"] > 0 and r["import_s"] > 0
    (c,) = res["commands"]  # verify loads no JAX: exit 0, small, same outputs
    assert c["cold"]["returncode"] == 0 and c["warm"]["returncode"] == 0
    assert 0 < c["cold"]["peak_rss_mb"] < 2048
    s = res["summary"]
    assert s["worst_repeat_call_ms"] == f["cold"]["repeat_ms_median"]
    assert s["repeat_call_target_met"] == (s["worst_repeat_call_ms"] <= 2.0)
    assert any(line.startswith("angle") for line in lines)


def test_compare_outputs_finds_differences(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, v in ((a, 1.0), (b, 1.0)):
        (d / "sub").mkdir(parents=True)
        np.savez(d / "sub" / "x.npz", x=np.array([v, np.nan]))
        c = {"v": 1, "provenance": {"time_utc": str(d)}, "run": {"configs_per_second": v * id(d)}}
        (d / "c.json").write_text(json.dumps(c))
    assert _latency.compare_outputs(a, b) == {"files_compared": 2, "files_differing": []}
    np.savez(b / "sub" / "x.npz", x=np.array([2.0, np.nan]))
    (b / "c.json").write_text(json.dumps({"v": 2}))
    assert sorted(_latency.compare_outputs(a, b)["files_differing"]) == ["c.json", "sub/x.npz"]


def test_unknown_sizes_rejected():
    with pytest.raises(ValueError, match="unknown size"):
        _latency.run(sizes={"bogus": 1})
    with pytest.raises(ValueError, match="unknown function"):
        _latency.run(sizes={"functions": ("nope",), "commands": ()})


def test_make_figures_reports_progress_and_memory(monkeypatch, tmp_path):
    import geotrip.figures as figs
    from geotrip.figures._registry import FigureSpec

    def make(*, out_dir, seed, quick):
        from geotrip.figures._registry import progress

        progress("halfway")
        (out_dir / "dummy.txt").write_text(f"{seed} {quick}")
        return [out_dir / "dummy.txt"]

    registry = {"dummy": FigureSpec("dummy", make, "a test figure", "test")}
    monkeypatch.setattr(figs, "load_all", lambda: registry)
    lines = []
    (rec,) = figs.make_figures(out_dir=tmp_path, seed=3, quick=True, log=lines.append)
    assert (tmp_path / "dummy.txt").read_text() == "3 True"
    assert lines[0] == "[1/1] dummy: started" and lines[1].startswith("[1/1] dummy: halfway (")
    assert lines[2].startswith("[1/1] dummy: 1 files") and "figure peak" in lines[2]
    assert rec["files"] == 1 and rec["peak_rss_mb"] > 0 and rec["cpu_seconds"] >= 0
    inside = figs._Inside(lines.append, "[2/3] x", quiet=0.0)  # a heartbeat when quiet
    inside.heartbeat()
    assert lines[-1].startswith("[2/3] x: running")
    with pytest.raises(ValueError, match="valid: dummy"):
        figs.make_figures(["nope"], out_dir=tmp_path)


def test_analyze_suite_validates_sizes_and_writes_a_memmap(tmp_path):
    from geotrip.benchmarks import _analyze

    with pytest.raises(ValueError, match="unknown size"):
        _analyze.run(sizes={"bogus": 1})
    emb, lab = _analyze.write_embeddings(tmp_path, n=70_000, dim=4, classes=3)
    X = np.load(emb, mmap_mode="r")
    assert X.shape == (70_000, 4) and X.dtype == np.float32 and np.isfinite(X[-5:]).all()
    assert np.load(lab)[:4].tolist() == [0, 1, 2, 0]


@pytest.mark.slow  # a fresh `geotrip analyze` process on a small memory map: ~20 s
def test_analyze_suite_runs_small():
    from geotrip.benchmarks import _analyze

    res = _analyze.run(sizes={"n": 3000, "dim": 16, "classes": 10, "batches": (4, 4, 5)})
    assert res["returncode"] == 0, res.get("output_tail")
    assert res["seconds"] > 0 and 0 < res["peak_rss_mb"] < 4096 and not res["targets_apply"]
