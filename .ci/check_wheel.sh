#!/usr/bin/env bash
# `make wheel-check`: build the sdist and the wheel (`python -m build`, the wheel from
# the sdist), check what they hold, install the wheel (not editable) into a fresh venv,
# CPU torch first, and use it from a directory outside the source tree: the import
# must come from that venv's site-packages, and each of the four estimators fits and
# predicts once.
#
# Environment: BUILD_PYTHON, an interpreter with `build` (the `release` extra);
# PYTHON, the interpreter the fresh venv is made from; TORCH_SPEC, the torch to
# install first (an unpinned torch pulls several GB of CUDA packages); WHEEL_VENV.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_PYTHON=${BUILD_PYTHON:-.venv/bin/python}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
WHEEL_VENV=${WHEEL_VENV:-build/wheel-venv}
LOG=build/wheel-build.log
SECONDS=0

echo "== python -m build (log: $LOG)"
rm -rf dist "$WHEEL_VENV"
mkdir -p build
if ! "$BUILD_PYTHON" -m build --outdir dist . >"$LOG" 2>&1; then
    tail -n 60 "$LOG" >&2
    echo "python -m build failed (full log: $LOG)" >&2
    exit 1
fi

echo "== contents of the sdist and the wheel"
"$BUILD_PYTHON" - <<'EOF'
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

sdists = sorted(Path("dist").glob("sk_slim-*.tar.gz"))
wheels = sorted(Path("dist").glob("sk_slim-*.whl"))
if len(sdists) != 1 or len(wheels) != 1:
    sys.exit(f"expected one sdist and one wheel in dist/, found {sdists} {wheels}")
sdist, wheel = sdists[0], wheels[0]
name, version, python_tag, abi, platform = wheel.stem.split("-")
if (python_tag, abi, platform) != ("py3", "none", "any"):
    sys.exit(f"{wheel.name}: expected a pure-Python py3-none-any wheel")
if sdist.name != f"sk_slim-{version}.tar.gz":
    sys.exit(f"{sdist.name} and {wheel.name} disagree on the version")

# Every file of the package in the source tree (a clean clone: what git tracks).
package = {
    p.as_posix()
    for p in Path("sk_slim").rglob("*")
    if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
}
problems = []

with tarfile.open(sdist) as tar:
    top = f"sk_slim-{version}/"
    names = {m.name.removeprefix(top) for m in tar.getmembers() if m.isfile()}
    for required in ("README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "PKG-INFO"):
        if required not in names:
            problems.append(f"sdist lacks {required}")
    in_sdist = {n for n in names if n.startswith("sk_slim/")}
    for missing in sorted(package - in_sdist):
        problems.append(f"sdist lacks {missing}")
    for extra in sorted(in_sdist - package):
        problems.append(f"sdist has {extra}, which the source tree has not")

with zipfile.ZipFile(wheel) as whl:
    names = {n for n in whl.namelist() if not n.endswith("/")}
    dist_info = f"sk_slim-{version}.dist-info/"
    in_wheel = {n for n in names if n.startswith("sk_slim/")}
    for missing in sorted(package - in_wheel):
        problems.append(f"wheel lacks {missing}")
    for extra in sorted(in_wheel - package):
        problems.append(f"wheel has {extra}, which the source tree has not")
    for other in sorted(names - in_wheel):
        if not other.startswith(dist_info):
            problems.append(f"wheel has {other} outside sk_slim/ and its dist-info")
    if f"{dist_info}licenses/LICENSE" not in names:
        problems.append(f"wheel lacks {dist_info}licenses/LICENSE")
    metadata = Parser().parsestr(whl.read(f"{dist_info}METADATA").decode())
    if metadata["Version"] != version:
        problems.append(f"METADATA Version {metadata['Version']} != {version}")
    if metadata["License-Expression"] != "BSD-3-Clause":
        problems.append(f"METADATA License-Expression {metadata['License-Expression']}")

if problems:
    sys.exit("\n".join(problems))
print(f"{sdist.name}: README.md LICENSE CHANGELOG.md pyproject.toml PKG-INFO and the package")
print(f"{wheel.name}: {len(in_wheel)} files of sk_slim/ (all of the source tree's), "
      "dist-info with licenses/LICENSE, License-Expression BSD-3-Clause")
EOF

echo "== fresh venv $WHEEL_VENV: $TORCH_SPEC, then the wheel"
"$PYTHON" -m venv "$WHEEL_VENV"
VENV_PYTHON=$ROOT/$WHEEL_VENV/bin/python
"$VENV_PYTHON" -m pip install --quiet --upgrade pip
"$VENV_PYTHON" -m pip install --quiet "$TORCH_SPEC"
"$VENV_PYTHON" -m pip install --quiet dist/sk_slim-*.whl
"$VENV_PYTHON" -m pip check

echo "== the installed wheel, used from outside the source tree"
OUTSIDE=$(mktemp -d)
trap 'rm -rf "$OUTSIDE"' EXIT
# -I: no PYTHONPATH, no user site, no current directory on sys.path.
(cd "$OUTSIDE" && SOURCE_TREE=$ROOT "$VENV_PYTHON" -I - <<'EOF'
import importlib.metadata
import json
import os
import sys
import sysconfig
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

import sk_slim
from sk_slim import (
    GNvproClassifier,
    GNvproRegressor,
    SlimTrainClassifier,
    SlimTrainRegressor,
)
from sk_slim.datasets import make_cdr_surrogate

site_packages = os.path.realpath(sysconfig.get_paths()["purelib"])
imported_from = os.path.realpath(os.path.dirname(sk_slim.__file__))
assert imported_from == os.path.join(site_packages, "sk_slim"), (
    f"sk_slim imported from {imported_from}, not from {site_packages}"
)
source_tree = os.path.realpath(os.environ["SOURCE_TREE"])
assert not any(os.path.realpath(p or ".") == source_tree for p in sys.path), sys.path
direct_url = importlib.metadata.distribution("sk_slim").read_text("direct_url.json")
if direct_url:
    assert not json.loads(direct_url).get("dir_info", {}).get("editable"), direct_url
print(f"sk_slim imported from {imported_from}")

X, y = make_cdr_surrogate(n_samples=50, random_state=0)
assert X.shape == (50, 55) and y.shape == (50, 72), (X.shape, y.shape)
assert np.isfinite(X).all() and np.isfinite(y).all()
print(f"make_cdr_surrogate(n_samples=50): X {X.shape}, y {y.shape}")

rng = np.random.default_rng(0)
X = rng.uniform(-1.0, 1.0, size=(300, 4))
y_reg = np.sin(3.0 * X[:, 0]) + X[:, 1] ** 2
y_cls = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)  # 3 classes
estimators = [
    (SlimTrainRegressor(max_iter=5, random_state=0), y_reg),
    (GNvproRegressor(max_iter=3, random_state=0), y_reg),
    (SlimTrainClassifier(max_iter=5, random_state=0), y_cls),
    (GNvproClassifier(max_iter=3, random_state=0), y_cls),
]
for estimator, target in estimators:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(X, target)
    prediction = estimator.predict(X)
    assert prediction.shape == target.shape, prediction.shape
    if hasattr(estimator, "predict_proba"):
        assert set(np.unique(prediction)) <= set(estimator.classes_)
        proba = estimator.predict_proba(X)
        assert proba.shape == (300, 3) and np.allclose(proba.sum(axis=1), 1.0)
    else:
        assert np.isfinite(prediction).all()
    score = estimator.score(X, target)
    name = type(estimator).__name__
    print(f"{name}: fit + predict {time.perf_counter() - start:.1f} s, score {score:.3f}")

installed = importlib.metadata.version("sk_slim")
assert sk_slim.__version__ == installed, (
    f"sk_slim.__version__ is {sk_slim.__version__!r}, the wheel's metadata {installed!r}"
)
print(f"sk_slim {installed}")
EOF
)
echo "== wheel check passed in ${SECONDS} s"
