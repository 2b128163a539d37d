"""Sphinx configuration of the geotrip documentation site.

Build (from the repository root, with the ``docs`` extra installed)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API reference, the CLI pages, the executed notebooks and the "Running at scale" page are
generated at build time by the local extension ``docs/_ext/geotrip_docs.py``.
"""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))  # the checkout's geotrip, installed or not

os.environ.setdefault("JAX_PLATFORMS", "cpu")

project = "geotrip"
author = "the geotrip developers"
copyright = "the geotrip developers, Apache-2.0"
version = release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 served from the site itself (no CDN)
    "sphinx.ext.viewcode",
    "myst_nb",
    "sphinxarg.ext",
    "geotrip_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "CONTRIBUTING.md", "**/.ipynb_checkpoints", "**.sha256"]
# docs/_generated/* are included into pages, not pages of their own.
exclude_patterns += ["_generated"]

# Cross-references: a reference that does not resolve is a warning, hence an error under -W.
nitpicky = True
nitpick_ignore_regex = [
    # Types from other libraries: no inventory is fetched (the build machine is offline).
    (
        r"py:.*",
        r"(jax|jnp|np|numpy|optax|mpmath|pathlib|os|collections|typing|argparse|functools|dataclasses)\..*",
    ),
    (r"py:.*", r"(Array|ArrayLike|PRNGKey|Callable|Sequence|Mapping|Iterable|Path|Any)"),
]

# autodoc + napoleon: the docstrings are reST with NumPy/Google sections and ``.. math::``.
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = False
autodoc_mock_imports = []
napoleon_google_docstring = True
napoleon_numpy_docstring = True
# A Google "Returns:" line is "type: description"; prose such as "A dict of scalars: ..."
# must not become a cross-reference to a type named "A dict".
napoleon_use_rtype = False
add_module_names = False

# MyST / myst-nb: notebooks are executed by geotrip_docs (one process and one time limit per
# notebook, quick settings) before the read phase; myst-nb only renders their outputs.
nb_execution_mode = "off"
nb_output_stderr = "remove"
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
# myst asks every domain to resolve a link such as `readme.md#anchor`; sphinx-argparse's
# domain does not implement that hook and says so (a tooling message, not a broken link).
suppress_warnings = ["myst.domains"]

html_theme = "furo"
html_title = "geotrip"
html_static_path = []
html_show_sourcelink = False
# Keep "--option" as typed (CLI pages): no en dashes from smart quotes.
smartquotes = False
