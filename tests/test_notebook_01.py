import pytest
from nbrun import run_notebook


# Every notebook is also executed (quick settings) by the documentation build that
# .ci/run runs after the tests; a failing cell fails that build.
@pytest.mark.slow
def test_notebook_01_runs():
    nb = run_notebook("01_gradient_geometry.ipynb", timeout=300)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
