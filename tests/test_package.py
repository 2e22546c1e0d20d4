"""The package's layering, checked on its source: modules import only downward
(the numerical core imports neither scikit-learn nor numpy), and numpy <-> torch
conversion happens in the estimators' shared base, _base.py, only."""

import ast
import re
import warnings
from pathlib import Path

import pytest
from sklearn.exceptions import ConvergenceWarning

import sk_slim

PACKAGE = Path(sk_slim.__file__).parent


def _imports(path):
    """Absolute names a source file imports (``from torch import nn`` -> torch.nn)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "linalg").glob("*.py")), ids=lambda p: p.name
)
def test_linalg_is_pure_torch(path):
    # Numerics never import sklearn or numpy, and never see an nn.Module.
    forbidden = {
        name
        for name in _imports(path)
        if name.split(".")[0] in {"sklearn", "numpy"} or name.startswith("torch.nn")
    }
    assert not forbidden


NUMERICS = sorted((PACKAGE / "training").glob("*.py")) + [PACKAGE / "networks.py"]


@pytest.mark.parametrize("path", NUMERICS, ids=lambda p: p.name)
def test_training_and_networks_import_no_sklearn_or_numpy(path):
    imported = _imports(path)
    # mgrit.py adapts pymgrit, whose vectors and MGRIT module are numpy's;
    # numpy_step.py is slimTrain's CPU step in numpy (torch's dispatch costs
    # more than a mini-batch's arithmetic: the fit-time issue's "numpy for
    # small CPU arrays where it pays").
    numpy_allowed = {"mgrit.py", "numpy_step.py"}
    forbidden = {"sklearn"} if path.name in numpy_allowed else {"sklearn", "numpy"}
    assert not {m for m in imported if m.split(".")[0] in forbidden}


# Libraries whose values are numpy arrays: a module importing none of them has no
# arrays of its own (sk_slim's estimators hand the numerical core tensors only).
ARRAY_LIBRARIES = {"numpy", "scipy", "sklearn", "pandas", "skorch"}
TO_TORCH = {"as_tensor", "tensor", "from_numpy"}


def _conversions(source):
    """The numpy <-> torch conversions in a module's source, as (line, code).

    Flags every ``.numpy()`` call (a tensor to numpy), every ``torch.from_numpy``,
    and ``torch.as_tensor``/``torch.tensor`` of anything but a literal in a
    module that imports an array library (there the argument could be an array).
    Spellings: ``torch.f``, ``<alias>.f`` after ``import torch as <alias>``, and
    ``f`` (or its alias) after ``from torch import f``.
    """
    tree = ast.parse(source)
    torch_names, converters, has_arrays = set(), {}, False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                has_arrays |= alias.name.split(".")[0] in ARRAY_LIBRARIES
                if alias.name == "torch":
                    torch_names.add(alias.asname or "torch")
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            has_arrays |= node.module.split(".")[0] in ARRAY_LIBRARIES
            if node.module == "torch":
                converters |= {
                    alias.asname or alias.name: alias.name
                    for alias in node.names
                    if alias.name in TO_TORCH
                }
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "numpy":
            found.append((node.lineno, ast.unparse(node)))
            continue
        if (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in torch_names
            and func.attr in TO_TORCH
        ):
            name = func.attr
        elif isinstance(func, ast.Name) and func.id in converters:
            name = converters[func.id]
        else:
            continue
        data = node.args[0] if node.args else None
        if name == "from_numpy" or (has_arrays and not _is_literal(data)):
            found.append((node.lineno, ast.unparse(node)))
    return found


def _is_literal(node):
    """Whether an expression is a constant (a number, or a list of numbers)."""
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def test_numpy_torch_conversion_happens_in_base_only():
    # The estimators' shared base (fitting in _base.py, its inference mixin in
    # _inference.py) turns the user's arrays into tensors and the results back
    # into arrays; every other module works on one side only, but for
    # slimTrain's numpy step, which views an epoch's tensors as arrays (and
    # slimTik's state, which linalg/slimtik.py updates in either namespace).
    base = {
        PACKAGE / "_base.py",
        PACKAGE / "_inference.py",
        PACKAGE / "training" / "numpy_step.py",
    }
    offenders = {
        str(path.relative_to(PACKAGE)): found
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in base and (found := _conversions(path.read_text()))
    }
    assert offenders == {}


@pytest.mark.parametrize(
    "source, flagged",
    [
        ("Z = net.features(X).detach().cpu().numpy()", True),
        ("import numpy as np\nimport torch\nx = torch.as_tensor(np.ones(3))", True),
        ("import torch as th\nfrom sklearn import utils\nx = th.tensor(y)", True),
        ("from torch import from_numpy as wrap\nx = wrap(a)", True),
        ("import torch\nx = torch.from_numpy(a)", True),
        # The numerical core's conversions of Python numbers: no arrays there.
        ("import torch\nr = torch.as_tensor(radius, dtype=b.dtype)", False),
        ("import numpy as np\nimport torch\nx = torch.tensor([0.5, -1.0])", False),
        ("import numpy as np\nx = np.asarray(y)", False),
    ],
)
def test_conversion_finder(source, flagged):
    assert bool(_conversions(source)) == flagged


def test_public_names_are_strings_that_resolve():
    import sk_slim.linalg as linalg
    import sk_slim.networks as networks

    for module in (sk_slim, linalg, networks):
        assert all(isinstance(name, str) for name in module.__all__)
        assert all(hasattr(module, name) for name in module.__all__)


def test_readme_usage_example_runs(capsys):
    # The README's usage block is executed as written, so it cannot rot.
    readme = (PACKAGE.parent / "README.md").read_text()
    code = re.search(r"## Usage\n\n```python\n(.*?)```", readme, re.S).group(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        exec(compile(code, "README.md", "exec"), {})
    scores = re.findall(r"test R\^2: ([-\d.]+)", capsys.readouterr().out)
    assert len(scores) == 1 and float(scores[0]) > 0.7
