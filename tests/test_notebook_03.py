"""Execute notebooks/03_counterexamples.ipynb with small budgets."""

import pytest
from nbrun import run_notebook


# Every notebook is also executed (quick settings) by the documentation build that
# .ci/run runs after the tests; a failing cell fails that build.
@pytest.mark.slow
def test_notebook_03_runs_quick():
    nb = run_notebook("03_counterexamples.ipynb", env={"GEOTRIP_NOTEBOOK_QUICK": "1"}, timeout=300)
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "certificate verified" in text
    assert "certificate REJECTED" in text
    assert "exit status 2" in text
