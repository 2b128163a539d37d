"""geotrip analyze: input formats, every bad input (one-line error, no output), HTML, CLI."""

import base64
import json
import pickle
import warnings
from html.parser import HTMLParser

import numpy as np
import pytest

import geotrip as gt
from geotrip.cli import main

KW = dict(strategies=("batch_hard",))  # the cheapest strategy: these tests are about I/O


def _data(n_per=4, n_classes=3, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_per * n_classes, dim)) + 4 * np.repeat(
        np.eye(dim)[:n_classes], n_per, axis=0
    )
    return X.astype(np.float32), np.repeat(np.arange(n_classes), n_per)


# ---------------------------------------------------------------- formats


def test_npy_is_memory_mapped_and_npz_key(tmp_path):
    X, y = _data()
    np.save(tmp_path / "x.npy", X)
    Xm, lab = gt.load_embeddings(tmp_path / "x.npy")
    assert isinstance(Xm, np.memmap) and lab is None and np.array_equal(Xm, X)
    np.savez(tmp_path / "z.npz", emb=X, other=y)
    assert np.array_equal(gt.load_embeddings(tmp_path / "z.npz", key="emb")[0], X)
    with pytest.raises(ValueError, match="holds 2 arrays"):
        gt.load_embeddings(tmp_path / "z.npz")
    with pytest.raises(ValueError, match="no array 'nope'"):
        gt.load_embeddings(tmp_path / "z.npz", key="nope")
    np.save(tmp_path / "y.npy", y)
    assert np.array_equal(gt.load_labels(tmp_path / "y.npy"), y)


def test_csv_tsv_with_label_column_and_string_labels(tmp_path):
    X, y = _data()
    names = np.array(["cat", "dog", "eel"])[y]
    rows = ["f0,f1,label,f2,f3"] + [
        ",".join([f"{v:.9g}" for v in x[:2]] + [s] + [f"{v:.9g}" for v in x[2:]])
        for x, s in zip(X, names)
    ]
    (tmp_path / "e.csv").write_text("\n".join(rows) + "\n")
    Xc, lab = gt.load_embeddings(tmp_path / "e.csv", label_column="label")
    np.testing.assert_allclose(Xc, X, rtol=1e-6)
    assert list(lab) == list(names)
    (tmp_path / "e.tsv").write_text("\n".join("\t".join(f"{v:.9g}" for v in x) for x in X))
    Xt, _ = gt.load_embeddings(tmp_path / "e.tsv")
    np.testing.assert_allclose(Xt, X, rtol=1e-6)
    (tmp_path / "l.txt").write_text("\n".join(names))
    assert list(gt.load_labels(tmp_path / "l.txt")) == list(names)
    (tmp_path / "l.csv").write_text("id,klass\n" + "\n".join(f"{i},{s}" for i, s in enumerate(y)))
    assert np.array_equal(gt.load_labels(tmp_path / "l.csv", column="klass"), y)
    r1 = gt.analyze(Xc, lab, **KW)
    r2 = gt.analyze(X, y, **KW)
    assert r1["n_classes"] == 3
    assert r1["triplets"]["batch_hard"]["counts"] == r2["triplets"]["batch_hard"]["counts"]


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "row, value, what",
    [
        (3, np.nan, "NaN/inf at rows \\[3\\]"),
        (5, np.inf, "NaN/inf at rows \\[5\\]"),
        (7, 0.0, "zero"),
    ],
)
def test_invalid_rows_are_reported_or_dropped(row, value, what):
    X, y = _data()
    X[row] = value
    with pytest.raises(ValueError, match=what):
        gt.analyze(X, y, **KW)
    r = gt.analyze(X, y, drop_invalid=True, **KW)
    assert r["n_points"] == len(y) - 1 and r["input"]["dropped_invalid"] == 1


def test_label_problems():
    X, y = _data()
    with pytest.raises(ValueError, match="11 labels for 12 embedding rows"):
        gt.analyze(X, y[:-1], **KW)
    with pytest.raises(ValueError, match="at least 2 classes"):
        gt.analyze(X, np.zeros(len(y), dtype=int), **KW)
    y2 = y.copy()
    y2[0] = 99  # a class with a single sample
    with pytest.warns(UserWarning, match="single sample"):
        r = gt.analyze(X, y2, **KW)
    assert r["n_points"] == len(y) - 1 and r["input"]["singleton_classes"] == 1
    with pytest.raises(ValueError, match="object array"):
        gt.analyze(X, np.array([object()] * len(y)), **KW)


def test_option_problems():
    X, y = _data()
    with pytest.raises(ValueError, match="limited to max_exact=5"):
        gt.analyze(X, y, triplets="all", max_exact=5, **KW)
    with pytest.raises(ValueError, match="need 4 classes with >= 2 points, found 3"):
        gt.analyze(X, y, triplets="batches", batches=(4, 2, 3), **KW)
    with pytest.raises(ValueError, match="unknown mining strategy 'hardest'"):
        gt.analyze(X, y, strategies=("hardest",))
    with pytest.raises(ValueError, match="unknown matching rule"):
        gt.analyze(X, y, match="median", **KW)
    with pytest.raises(ValueError, match="margin must be"):
        gt.analyze(X, y, margin=float("nan"), **KW)


def test_array_shapes_and_types(tmp_path):
    X, y = _data()
    for bad in (X[:, 0], X[None]):
        with pytest.raises(ValueError, match="2-D"):
            gt.analyze(bad, y, **KW)
    np.save(tmp_path / "one.npy", X[:, 0])
    np.save(tmp_path / "three.npy", X[None])
    for f in ("one.npy", "three.npy"):
        with pytest.raises(ValueError, match="2-D"):
            gt.load_embeddings(tmp_path / f)
    np.save(tmp_path / "obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="never unpickles"):
        gt.load_embeddings(tmp_path / "obj.npy")
    with pytest.raises(ValueError, match="object"):
        gt.load_labels(tmp_path / "obj.npy")
    (tmp_path / "p.npy").write_bytes(pickle.dumps(X))
    with pytest.raises(ValueError, match="pickle.*never unpickles"):
        gt.load_embeddings(tmp_path / "p.npy")
    (tmp_path / "p.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="not a readable .npy"):
        gt.load_embeddings(tmp_path / "p.npy")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        gt.load_embeddings(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="no such file"):
        gt.load_embeddings(tmp_path / "missing.npy")
    (tmp_path / "e.xyz").write_text("1 2")
    with pytest.raises(ValueError, match="unknown format"):
        gt.load_embeddings(tmp_path / "e.xyz")
    with pytest.raises(ValueError, match="is a directory"):
        gt.load_embeddings(tmp_path)
    (tmp_path / "t.csv").write_text("1,2\n3,abc\n")
    with pytest.raises(ValueError, match="line 2: 'abc' is not a number"):
        gt.load_embeddings(tmp_path / "t.csv")


# ---------------------------------------------------------------- outputs


class _Imgs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.srcs.append(dict(attrs).get("src", ""))


def _check_html(path, n_figures=3):
    parser = _Imgs()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    assert {"html", "body", "table"} <= set(parser.tags)
    assert len(parser.srcs) == n_figures
    for src in parser.srcs:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def _run_cli(args, capsys):
    code = main(["analyze", *args])
    return code, capsys.readouterr()


def test_cli_round_trip(tmp_path, capsys):
    X, y = _data(n_per=5)
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "y.txt").write_text("\n".join(f"class_{v}" for v in y))
    out = tmp_path / "report"
    args = ["--embeddings", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.txt")]
    code, cap = _run_cli(
        [*args, "--out", str(out), "--strategy", "batch_all", "batch_hard"], capsys
    )
    assert code == 0, cap.err
    names = {p.name for p in out.iterdir()}
    figs = {
        f"{f}.{e}"
        for f in ("pair_angles", "active_sets", "gradient_angles")
        for e in ("png", "pdf")
    }
    assert names == {"report.json", "report.html"} | figs
    rep = json.loads((out / "report.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ref = gt.analyze(X, y, strategies=("batch_all", "batch_hard"))
    assert rep["triplets"] == ref["triplets"]
    assert rep["provenance"]["inputs"][0]["size_bytes"] == (tmp_path / "x.npy").stat().st_size
    assert len(rep["provenance"]["inputs"][1]["sha256"]) == 64
    assert (out / "active_sets.pdf").read_bytes()[:4] == b"%PDF"
    _check_html(out / "report.html")


def test_cli_bad_inputs_exit_2_one_line_no_output(tmp_path, capsys):
    X, y = _data()
    X[2] = np.nan
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "short.npy", y[:-1])
    (tmp_path / "afile").write_text("")
    base = ["--embeddings", str(tmp_path / "x.npy")]
    cases = [
        ([*base, "--labels", str(tmp_path / "y.npy")], "invalid rows"),
        ([*base, "--labels", str(tmp_path / "short.npy")], "11 labels for 12"),
        ([*base, "--labels", str(tmp_path / "nope.npy")], "no such file"),
        (["--embeddings", str(tmp_path / "y.npy"), "--labels", str(tmp_path / "y.npy")], "2-D"),
        ([*base, "--labels", str(tmp_path / "y.npy"), "--distance", "manhattan"], "unknown"),
        ([*base], "--labels"),
    ]
    for args, msg in cases:
        out = tmp_path / "out"
        code, cap = _run_cli([*args, "--out", str(out), "--strategy", "batch_hard"], capsys)
        assert code == 2 and msg in cap.err, (args, cap.err)
        assert len(cap.err.strip().splitlines()) == 1, cap.err
        assert not out.exists()
    code, cap = _run_cli(
        [*base, "--labels", str(tmp_path / "y.npy"), "--out", str(tmp_path / "afile")], capsys
    )
    assert code == 2 and "not a directory" in cap.err
    assert (tmp_path / "afile").read_text() == ""
    y1 = y.copy()
    y1[0] = 7  # a singleton class: excluded, with a one-line warning
    np.save(tmp_path / "y1.npy", y1)
    args = [*base, "--labels", str(tmp_path / "y1.npy"), "--drop-invalid", "--no-figures"]
    code, cap = _run_cli([*args, "--out", str(tmp_path / "ok"), "--strategy", "batch_hard"], capsys)
    assert code == 0 and "warning: excluded 1 classes with a single sample (7)" in cap.err
    rep = json.loads((tmp_path / "ok" / "report.json").read_text())
    assert rep["n_points"] == len(y) - 2 and rep["input"]["dropped_invalid"] == 1


def test_write_report_is_atomic_on_failure(tmp_path, monkeypatch):
    X, y = _data()
    rep = gt.analyze(X, y, **KW)
    out = tmp_path / "r"
    from geotrip.analysis import _render

    def boom(*a, **k):
        raise RuntimeError("render failed")

    monkeypatch.setattr(_render, "render_html", boom)
    with pytest.raises(RuntimeError):
        gt.write_report(rep, out)
    assert not out.exists()  # rendered in memory first: nothing written
    monkeypatch.undo()
    gt.write_report(rep, out, figures=False)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    _check_html(out / "report.html", n_figures=0)


@pytest.mark.slow
def test_cli_example_trains_digits_and_writes_a_report(tmp_path, capsys):
    import jax

    out = tmp_path / "ex"
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes Python floats and int32
        code, cap = _run_cli(
            ["--example", "--example-steps", "30", "--strategy", "batch_hard", "--out", str(out)],
            capsys,
        )
    assert code == 0, cap.err
    rep = json.loads((out / "report.json").read_text())
    assert "digits" in rep["example"]["source"] and rep["n_classes"] == 10
    assert np.load(out / "embeddings.npy").shape == (rep["n_points"], 16)
    _check_html(out / "report.html")
