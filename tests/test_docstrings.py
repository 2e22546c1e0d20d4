"""numpydoc validation of every public docstring: the public API is documented in the
numpydoc format.

The public API is what the modules below export in ``__all__``: the estimators, the
functions and classes of ``sk_slim.linalg``/``networks``/``training``/``datasets``,
and every public method or property that sk_slim itself defines on those classes
(methods inherited from scikit-learn or torch are theirs to document). A class added
to an ``__all__`` is checked without touching this file.
"""

import dataclasses
import importlib
import inspect
import re
from pathlib import Path

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")
from numpydoc.docscrape import NumpyDocString  # noqa: E402 (after the importorskip)

PUBLIC_MODULES = (
    "sk_slim",
    "sk_slim.datasets",
    "sk_slim.linalg",
    "sk_slim.networks",
    "sk_slim.preprocessing",
    "sk_slim.training",
    "sk_slim.training.gauss_newton",
    # The optional skorch bridge: only when skorch is installed (it is in the
    # test extra, so CI checks it).
    *(("sk_slim.skorch",) if importlib.util.find_spec("skorch") else ()),
    "sk_slim.training.linearization",
    # The parallel extra: only when pymgrit is installed (it is in the test extra).
    *(("sk_slim.training.mgrit",) if importlib.util.find_spec("pymgrit") else ()),
)

# Every numpydoc check is enforced except these.
IGNORED = {
    "ES01": "an extended summary is optional: many kernels say all in one line",
    "SA01": "See Also is given where a neighbour helps, not on every object",
    "EX01": "Examples are required of estimators and data sets only (test below); "
    "kernels are shown by the tests and the gallery",
    "RT02": "returns are named (`W : Tensor of shape (p, c)`), the scikit-learn "
    "style, which RT02 misreads as a type",
}

# Objects whose docstrings must carry an (executed, doctested) Examples section.
NEEDS_EXAMPLES = ("sk_slim", "sk_slim.datasets")

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _exported(module_name):
    """(qualified name, object) of each public class or function of a module."""
    module = importlib.import_module(module_name)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            yield f"{module_name}.{name}", obj


def _own_members(cls):
    """Public methods and properties that sk_slim defines on ``cls`` or its bases."""
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        owner = next((c for c in cls.__mro__ if name in vars(c)), None)
        if owner is None or not owner.__module__.startswith("sk_slim"):
            continue
        member = vars(owner)[name]
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if inspect.isfunction(member) or isinstance(member, property):
            yield name


def _public_names():
    names = {}
    for module_name in PUBLIC_MODULES:
        for qualified, obj in _exported(module_name):
            names.setdefault(obj, qualified)
    result = []
    for obj, qualified in names.items():
        result.append(qualified)
        if inspect.isclass(obj):
            result += [f"{qualified}.{member}" for member in _own_members(obj)]
    return sorted(result)


PUBLIC_NAMES = _public_names()


def _resolve(qualified):
    module_name, _, rest = qualified.partition(".")
    obj = importlib.import_module(module_name)
    for part in rest.split("."):
        obj = getattr(obj, part)
    return obj


def _fields_documented_as_attributes(obj):
    """True for a dataclass whose init fields are all under Attributes.

    Result and state records (``GCVResult``, ``SlimTikState``...) are built by
    sk_slim, not by users: their fields are documented as Attributes, which
    numpydoc's PR01 (Parameters of ``__init__``) does not know.
    """
    if not (inspect.isclass(obj) and dataclasses.is_dataclass(obj)):
        return False
    doc = NumpyDocString(inspect.getdoc(obj) or "")
    documented = {
        name.strip()
        for attribute in doc["Attributes"]
        for name in attribute.name.split(",")
    }
    fields = {field.name for field in dataclasses.fields(obj) if field.init}
    return fields <= documented


@pytest.mark.parametrize("qualified", PUBLIC_NAMES)
def test_docstring_is_valid_numpydoc(qualified):
    result = numpydoc_validate.validate(qualified)
    record = _fields_documented_as_attributes(_resolve(qualified))
    errors = [
        (code, message)
        for code, message in result["errors"]
        if code not in IGNORED and not (code == "PR01" and record)
    ]
    assert not errors, "\n".join(f"{code}: {message}" for code, message in errors)


@pytest.mark.parametrize(
    "qualified",
    [name for module in NEEDS_EXAMPLES for name, _ in _exported(module)],
)
def test_estimators_and_datasets_have_examples(qualified):
    codes = {code for code, _ in numpydoc_validate.validate(qualified)["errors"]}
    assert "EX01" not in codes


def _listed_in_api_reference():
    """Fully qualified names in the autosummary lists of docs/api.rst."""
    listed, module = set(), "sk_slim"
    for line in (DOCS / "api.rst").read_text().splitlines():
        if line.startswith(".. currentmodule::"):
            module = line.split("::")[1].strip()
        elif entry := re.fullmatch(r"\s{3}~?([\w.]+)\s*", line):
            listed.add(f"{module}.{entry.group(1)}")
    return listed


def test_api_reference_lists_every_public_name():
    # docs/api.rst is written by hand (autosummary lists): a new public class or
    # function must be added there too, one line each.
    listed = _listed_in_api_reference()
    missing = [
        qualified
        for module_name in PUBLIC_MODULES
        for qualified, _ in _exported(module_name)
        if qualified not in listed
    ]
    assert not missing, f"add to docs/api.rst: {missing}"
