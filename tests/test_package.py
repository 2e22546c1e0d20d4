"""The house rules of DESIGN.md §2, checked on the source: import only downward."""

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
    assert not {m for m in imported if m.split(".")[0] in {"sklearn", "numpy"}}


def test_numpy_torch_conversion_happens_in_base_only():
    # DESIGN.md §2: numpy <-> torch conversion lives in _base.py.
    conversions = ("torch.as_tensor(np", "from_numpy", ".numpy()")
    offenders = [
        path.name
        for path in PACKAGE.rglob("*.py")
        if path.name != "_base.py" and any(c in path.read_text() for c in conversions)
    ]
    assert offenders == []


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
    scores = [float(s) for s in re.findall(r"[-\d.]+", capsys.readouterr().out)]
    assert len(scores) == 3 and min(scores) > 0.7
