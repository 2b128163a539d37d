"""Execute notebooks/02_sweeps_and_mining.ipynb in quick mode."""

import pytest
from nbrun import run_notebook


# Every notebook is also executed (quick settings) by the documentation build that
# .ci/run runs after the tests; a failing cell fails that build.
@pytest.mark.slow
def test_notebook_02_runs():
    nb = run_notebook("02_sweeps_and_mining.ipynb", env={"GEOTRIP_NOTEBOOK_QUICK": "1"})
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "batch_hard identical: True" in text
    assert "prefix property: ok" in text  # chunk-size invariance: tests/test_sweeps.py
