"""Sphinx configuration: MyST pages and the API reference from the docstrings.

    python -m sphinx -W -b html docs docs/_build/html

The estimator reference (``api/estimators.md``) is generated from the
registry on every build by ``arsm_jax.reporting.estimator_table``, so it cannot
drift from the code; the API pages (``api/generated/``) by autosummary; the
notebooks are copied from ``notebooks/`` and shown with their committed
outputs (no execution, no network: MathJax is bundled). Building the experiment entry points' pages imports
``arsm_jax.tasks``, so the docs need the ``[experiments]`` extra too.
"""

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(DOCS)
sys.path.insert(0, REPO)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import arsm_jax  # noqa: E402
from arsm_jax.reporting import estimator_table  # noqa: E402

project = "arsm_jax"
copyright = "the arsm_jax authors"  # pylint: disable=redefined-builtin
release = arsm_jax.__version__
version = release

extensions = [
    "myst_nb",                   # MyST pages and the notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",    # MathJax bundled: math renders offline
]
# .rst first: autosummary writes its generated pages with the first suffix.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb",
                 ".ipynb": "myst-nb"}
# Generated fragments, shown through the pages that {include} them:
# diagnostics_table.md (experiments/diagnostics.py) in api/diagnostics_table.md,
# results/ (scripts/make_results.py) in the experiment pages.
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "diagnostics_table.md",
                    "results/**", "**.ipynb_checkpoints"]
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
# The notebooks are shown with their committed outputs, never executed here
# (tests/test_notebook.py runs them and checks the outputs are current).
nb_execution_mode = "off"
templates_path = ["_templates"]
autosummary_generate = True
autosummary_imported_members = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_default_options = {"exclude-members": "__weakref__"}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes of NamedTuples as fields, not a second description of each.
napoleon_use_ivar = True

html_theme = "sphinx_book_theme"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "home_page_in_toc": True,
    "navigation_with_keys": False,
}
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_title = f"arsm_jax {release}"


def _write_if_changed(path, text):
  old = None
  if os.path.exists(path):
    with open(path, encoding="utf-8") as fh:
      old = fh.read()
  if old != text:  # Keeps Sphinx's incremental build from redoing the page.
    with open(path, "w", encoding="utf-8") as fh:
      fh.write(text)


# The notebooks, with their committed outputs, as pages of the site.
os.makedirs(os.path.join(DOCS, "notebooks"), exist_ok=True)
for _name in ("quickstart.ipynb",):
  with open(os.path.join(REPO, "notebooks", _name), encoding="utf-8") as _fh:
    _write_if_changed(os.path.join(DOCS, "notebooks", _name), _fh.read())

_write_if_changed(os.path.join(DOCS, "api", "estimators.md"),
                  estimator_table.docs_page(estimator_table.rows()))
