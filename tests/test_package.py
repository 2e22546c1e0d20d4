"""The house rules of DESIGN.md §2, checked on the source: import only downward."""

import ast
from pathlib import Path

import pytest

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


def test_public_names_are_strings_that_resolve():
    import sk_slim.linalg as linalg
    import sk_slim.networks as networks

    for module in (sk_slim, linalg, networks):
        assert all(isinstance(name, str) for name in module.__all__)
        assert all(hasattr(module, name) for name in module.__all__)
