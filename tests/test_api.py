"""The public API: one table (geotrip._api), every name resolves, no private imports."""

import importlib
import json
import pathlib
import re
import subprocess
import sys

import geotrip as gt
from geotrip import _api

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_every_public_name_resolves_from_its_module_and_its_room():
    locations = _api.locations()
    assert sorted(gt.__all__) == sorted(locations)
    for name, module in locations.items():
        obj = getattr(gt, name)
        assert getattr(importlib.import_module(module), name) is obj
        room = module.rsplit(".", 1)[0]
        if room != "geotrip":
            assert getattr(importlib.import_module(room), name) is obj
            assert name in importlib.import_module(room).__all__


def test_unknown_attribute_is_a_clear_attribute_error():
    try:
        gt.no_such_function  # noqa: B018
    except AttributeError as exc:
        assert "no_such_function" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_public_functions_have_docstrings():
    missing = [n for n in gt.__all__ if callable(getattr(gt, n)) and not getattr(gt, n).__doc__]
    assert not missing, f"public names without a docstring: {missing}"


def test_import_geotrip_does_not_load_jax():
    code = "import sys, geotrip; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


_PRIVATE = re.compile(r"(?:from|import)\s+geotrip(?:\.\w+)*\._\w+|geotrip\._\w+")


def test_notebooks_and_readme_use_only_public_names():
    offenders = []
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code" and _PRIVATE.search("".join(cell["source"])):
                offenders.append(nb.name)
    for block in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        if _PRIVATE.search(block):
            offenders.append("README.md")
    assert not offenders, f"private geotrip modules imported in: {sorted(set(offenders))}"


def test_no_room_is_named_like_a_public_name():
    """A subpackage ``geotrip.X`` would replace the public ``gt.X`` once imported."""
    rooms = {p.name for p in (ROOT / "geotrip").iterdir() if (p / "__init__.py").exists()}
    assert not rooms & set(gt.__all__), sorted(rooms & set(gt.__all__))


def test_search_stays_a_function_after_importing_the_verifier():
    code = (
        "import geotrip as gt, geotrip.counterexamples.certificates, geotrip.counterexamples; "
        "print(callable(gt.search), type(gt.search).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "function"]
