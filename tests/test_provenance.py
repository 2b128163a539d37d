"""Provenance records carry no absolute path of the machine that made them."""

import json
import os
import pathlib

import geotrip as gt
from geotrip._provenance import portable_command

ROOT = pathlib.Path(__file__).resolve().parents[1]


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
