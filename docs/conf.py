"""Sphinx configuration: MyST pages and the API reference from the docstrings.

    python -m sphinx -W -b html docs docs/_build/html

The estimator reference (``api/estimators.md``) is generated from the
registry on every build by ``scripts/estimator_table.py``, so it cannot
drift from the code. Building the experiment entry points' pages imports
``arsm_jax.tasks``, so the docs need the ``[experiments]`` extra too.
"""

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(DOCS)
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "scripts"))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import arsm_jax  # noqa: E402
import estimator_table  # noqa: E402

project = "arsm_jax"
copyright = "the arsm_jax authors"  # pylint: disable=redefined-builtin
release = arsm_jax.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
# Generated fragments, shown through the pages that {include} them:
# diagnostics_table.md (experiments/diagnostics.py) in api/diagnostics_table.md,
# results/ (scripts/make_results.py) in the experiment pages.
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "diagnostics_table.md",
                    "results/**"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_default_options = {"exclude-members": "__weakref__"}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes of NamedTuples as fields, not a second description of each.
napoleon_use_ivar = True

html_theme = "alabaster"
# Wide enough for the estimator table.
html_theme_options = {"page_width": "1200px", "sidebar_width": "230px"}
html_title = f"arsm_jax {release}"


def _write_if_changed(path, text):
  old = None
  if os.path.exists(path):
    with open(path, encoding="utf-8") as fh:
      old = fh.read()
  if old != text:  # Keeps Sphinx's incremental build from redoing the page.
    with open(path, "w", encoding="utf-8") as fh:
      fh.write(text)


_write_if_changed(os.path.join(DOCS, "api", "estimators.md"),
                  estimator_table.docs_page(estimator_table.rows()))
