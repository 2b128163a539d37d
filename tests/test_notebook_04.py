"""Execute notebooks/04_collapse.ipynb with the tiny preset."""

import pytest
from nbrun import run_notebook


# Every notebook is also executed (quick settings) by the documentation build that
# .ci/run runs after the tests; a failing cell fails that build.
@pytest.mark.slow
def test_notebook_04_runs():
    nb = run_notebook("04_collapse.ipynb", env={"GEOTRIP_NOTEBOOK_QUICK": "1"})
    text = "".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
    )
    assert "collapsed" in text and "McNemar p=" in text
