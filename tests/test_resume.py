"""Safe resume of collapse run folders (issue 12): the settings are recorded, a resume with
other settings is refused with one line naming them, --force starts afresh, and the bytes
of an interrupted append never reach a reader."""

import json

import pytest

from geotrip.cli import main
from geotrip.cli._collapse import PRESET_NAMES
from geotrip.train import COLLAPSE_PRESETS
from geotrip.train._rundir import (
    RunFolderError,
    open_folder,
    record_cells,
    settings_differences,
)

HEADER = b"cell,seed,collapsed\n"
ROW = b"a,0,1\n"


def _settings(preset="tiny", n_seeds=None, seed0=0, dtype="float64"):
    import dataclasses

    spec = COLLAPSE_PRESETS[preset]
    if n_seeds is not None:
        spec = dataclasses.replace(spec, n_seeds=n_seeds)
    return {"spec": spec.to_json(), "seed0": seed0, "dtype": dtype}


def _finished_folder(out, settings, cells=("a",)):
    """A folder as run_collapse_sweep leaves it after ``cells`` finished."""
    out.mkdir(parents=True, exist_ok=True)
    assert open_folder(out, settings, resume=True) == []
    (out / "runs.csv").write_bytes(HEADER + ROW * len(cells))
    (out / "history").mkdir(exist_ok=True)
    for c in cells:
        (out / "history" / f"{c}.npz").write_bytes(b"x")
    record_cells(out, settings, list(cells))


def test_settings_differences():
    a, b = _settings(n_seeds=2), _settings()
    assert settings_differences(a, b) == [("spec.n_seeds", 2, 3)]
    assert settings_differences(a, a) == []
    diff = dict((n, (x, y)) for n, x, y in settings_differences(_settings(), _settings("quick")))
    assert diff["spec.name"] == ("tiny", "quick") and len(diff) > 4
    assert settings_differences({"x": 1}, {}) == [("x", 1, None)]


def test_resume_same_settings_keeps_cells_and_drops_a_half_row(tmp_path):
    s = _settings()
    _finished_folder(tmp_path, s, cells=("a", "b"))
    size = (tmp_path / "runs.csv").stat().st_size
    with (tmp_path / "runs.csv").open("ab") as fh:  # a crash while appending cell c's rows
        fh.write(b"c,0,1\nc,1")
    assert open_folder(tmp_path, s, resume=True) == ["a", "b"]
    assert (tmp_path / "runs.csv").read_bytes() == HEADER + ROW * 2
    assert (tmp_path / "runs.csv").stat().st_size == size


def test_resume_other_settings_refused(tmp_path):
    _finished_folder(tmp_path, _settings(n_seeds=2))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(RunFolderError, match=r"spec\.n_seeds: 2 recorded, 3 now") as info:
        open_folder(tmp_path, _settings(), resume=True)
    assert info.value.differences == [("spec.n_seeds", 2, 3)]
    with pytest.raises(RunFolderError, match=r"seed0: 0 recorded, 1 now"):
        open_folder(tmp_path, _settings(n_seeds=2, seed0=1), resume=True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing touched


def test_damaged_or_unrecorded_folders_refused(tmp_path):
    s = _settings()
    _finished_folder(tmp_path, s)
    (tmp_path / "runs.csv").write_bytes(HEADER)  # shorter than recorded
    with pytest.raises(RunFolderError, match="shorter than recorded"):
        open_folder(tmp_path, s, resume=True)
    (tmp_path / "done.json").write_text(json.dumps({"cells": ["a"]}))  # an older geotrip's
    with pytest.raises(RunFolderError, match="without recorded settings"):
        open_folder(tmp_path, s, resume=True)


def test_fresh_start_clears_previous_outputs(tmp_path):
    _finished_folder(tmp_path, _settings(n_seeds=2))
    for name in ("phase.csv", "summary.json", "collapse_spread.png", "notes.txt"):
        (tmp_path / name).write_text("old")
    assert open_folder(tmp_path, _settings(), resume=False, outputs=("*.csv", "collapse_*.*")) == []
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert left == ["history", "notes.txt", "summary.json"]  # only the named outputs go
    # a run interrupted before its first cell (rows, no done.json) also starts afresh
    (tmp_path / "runs.csv").write_bytes(HEADER + b"c,0")
    assert open_folder(tmp_path, _settings(), resume=True) == []
    assert not (tmp_path / "runs.csv").exists()


def test_cli_refuses_other_settings_before_training(tmp_path, capsys):
    """The issue's two cases, refused in one line with exit status 2 and no traceback; the
    refusal comes before any training (the folder was made by hand, nothing is run). The
    tests run with float64 on, so a float32 folder differs in --x64 too."""
    out = tmp_path / "A"
    _finished_folder(out, _settings(n_seeds=2, dtype="float32"), cells=("features__x",))
    args = ["collapse", "--out", str(out), "--no-progress", "--no-figures"]
    assert main([*args, "--preset", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "--seeds: 2 recorded, 3 now" in err and "--force" in err
    assert main([*args, "--quick", "--max-cells", "1"]) == 2
    err = capsys.readouterr().err
    assert '--preset: "tiny" recorded, "quick" now' in err and "--seeds: 2 recorded, 8 now" in err
    assert main([*args, "--preset", "tiny", "--seeds", "2", "--x64"]) == 2
    assert '--x64: "float32" recorded, "float64" now' in capsys.readouterr().err
    assert json.loads((out / "done.json").read_text())["cells"] == ["features__x"]


def test_collapse_and_compare_do_not_share_a_folder(tmp_path, capsys):
    """Each command's provenance.json would overwrite the other's: refused both ways, in one
    line, before computing; --force does not help."""
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "compare.json").write_text("{}")
    with pytest.raises(RunFolderError, match=r"another command \(compare.json\)"):
        open_folder(tmp_path / "cmp", _settings(), resume=False, foreign=("compare.json",))
    base = ["--preset", "tiny", "--no-progress", "--no-figures", "--force"]
    assert main(["collapse", "--out", str(tmp_path / "cmp"), *base]) == 2
    err = capsys.readouterr().err
    assert "outputs of another command (compare.json)" in err and "--force" not in err
    _finished_folder(tmp_path / "col", _settings())
    assert main(["compare", "--preset", "tiny", "--out", str(tmp_path / "col")]) == 2
    assert "holds the outputs of geotrip collapse (done.json, runs.csv)" in capsys.readouterr().err


def test_cli_out_checked_before_computing(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    for cmd in ("collapse", "compare"):
        assert main([cmd, "--preset", "tiny", "--out", str(tmp_path / "file")]) == 2
        assert "exists and is not a directory" in capsys.readouterr().err
    assert main(["search", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert main(["search", "--out", str(tmp_path / "file" / "c.json"), "--no-progress"]) == 2
    assert "--out" in capsys.readouterr().err


def test_collapse_preset_help_lists_the_presets(capsys):
    assert set(PRESET_NAMES) == set(COLLAPSE_PRESETS)
    with pytest.raises(SystemExit):
        main(["collapse", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in PRESET_NAMES) and "default: quick" in text
