"""Sphinx configuration of the sk_slim documentation (``make docs``).

Offline by design: no intersphinx, no remote images, so ``sphinx-build -W`` passes
on a machine that can only reach the package registry.
"""

import os
import sys
import warnings
from pathlib import Path

# Document (and run the gallery against) this checkout, whatever is installed.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# sphinx-gallery runs the examples in this process: render plots without a display.
os.environ.setdefault("MPLBACKEND", "Agg")

import sk_slim  # noqa: E402

project = "sk_slim"
author = "the sk_slim developers"
copyright = "2026, the sk_slim developers"
release = sk_slim.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
default_role = "literal"

# -- API reference: autosummary stubs from docstrings, rendered by numpydoc -------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": True}
autodoc_typehints = "none"  # the numpydoc sections already give the types
numpydoc_show_class_members = False  # members are listed by the class template
numpydoc_class_members_toctree = False


def _skip_foreign_members(app, what, name, obj, skip, options):
    """Document the class members that sk_slim defines, not those it inherits.

    Methods from scikit-learn (``score``, ``get_params``, ``set_output``...) and
    torch (``nn.Module``) are documented there; their docstrings also point at
    labels of those projects' sites, which would fail the ``-W`` build.
    """
    if what != "class":
        return None
    function = obj.fget if isinstance(obj, property) else obj
    module = getattr(function, "__module__", None)
    if callable(function) and module and not module.startswith("sk_slim"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_foreign_members)


# -- Example gallery ------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    # Run every examples/plot_*.py (also ones added later); the README demo is
    # a command-line script, not a gallery page.
    "filename_pattern": r"plot_",
    "ignore_pattern": r"(__init__|demo)\.py",
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("sk_slim",),
    "backreferences_dir": "gen_modules/backreferences",
    "remove_config_comments": True,
    "download_all_examples": False,
    "min_reported_time": 1,
}
# Examples silence their ConvergenceWarnings themselves; hide matplotlib's
# non-GUI-backend notice.
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")

# -- HTML -------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sk_slim {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_sidebars = {"**": ["sidebar-nav-bs"]}
html_show_sourcelink = False
