"""to_torch(): the fitted estimator as a plain torch module on raw inputs."""

import io
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification, make_friedman1

from sk_slim import (
    GNvproClassifier,
    GNvproRegressor,
    SlimTrainClassifier,
    SlimTrainRegressor,
)

FAST = {
    SlimTrainRegressor: {"hidden_layer_sizes": (16, 16), "max_iter": 5},
    SlimTrainClassifier: {"hidden_layer_sizes": (16,), "max_iter": 5},
    GNvproRegressor: {"hidden_layer_sizes": (8,), "max_iter": 3},
    GNvproClassifier: {"hidden_layer_sizes": (8,), "max_iter": 3},
}
CASES = [
    (SlimTrainRegressor, 1),
    (SlimTrainRegressor, 3),
    (GNvproRegressor, 1),
    (SlimTrainClassifier, 2),
    (SlimTrainClassifier, 3),
    (GNvproClassifier, 3),
]


def _fitted(Estimator, n_out, **params):
    if Estimator in (SlimTrainClassifier, GNvproClassifier):
        X, y = make_classification(
            n_samples=120,
            n_features=4,
            n_informative=3,
            n_redundant=0,
            n_classes=n_out,
            random_state=0,
        )
    else:
        X, y = make_friedman1(n_samples=120, n_features=5, random_state=0)
        y = y * 10 + 3  # target scaling to fold in
        if n_out > 1:
            y = np.column_stack([y, -2 * y, X[:, 0]])
    params = {**FAST[Estimator], "random_state": 0, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Estimator(**params).fit(X, y), X


def _expected(model, X):
    """What the module must return: predict, or the logits behind
    decision_function (log predict_proba up to a per-row constant)."""
    if hasattr(model, "classes_"):
        return model.predict_log_proba(X)
    return model.predict(X)


def _expected_raw(model, X):
    """predict, or the logits themselves (decision_function, 3+ classes)."""
    if hasattr(model, "classes_"):
        assert len(model.classes_) > 2
        return model.decision_function(X)
    return model.predict(X)


@pytest.mark.parametrize(("Estimator", "n_out"), CASES)
def test_module_returns_what_the_estimator_predicts(Estimator, n_out):
    model, X = _fitted(Estimator, n_out)
    module = model.to_torch()
    assert isinstance(module, torch.nn.Module) and not module.training
    raw = module(torch.as_tensor(X)).detach().numpy()
    out, expected = raw, _expected(model, X)
    if hasattr(model, "classes_"):  # logits: compare their log-softmax
        out = out - np.log(np.exp(out).sum(axis=1, keepdims=True))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)
    # Its own parameters: later fits do not change it.
    model.set_params(warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, model.predict(X))
    np.testing.assert_array_equal(module(torch.as_tensor(X)).detach().numpy(), raw)


def test_module_is_differentiable_in_its_input():
    model, X = _fitted(SlimTrainRegressor, 3)
    module = model.to_torch()
    x = torch.as_tensor(X[:4])
    J = torch.func.vmap(torch.func.jacrev(lambda row: module(row[None])[0]))(x)
    eps = 1e-6
    for j in range(X.shape[1]):  # central differences of predict, column by column
        step = np.zeros(X.shape[1])
        step[j] = eps
        fd = (model.predict(X[:4] + step) - model.predict(X[:4] - step)) / (2 * eps)
        np.testing.assert_allclose(
            J[:, :, j].detach().numpy(), fd, rtol=1e-6, atol=1e-7
        )


@pytest.mark.parametrize(
    ("Estimator", "n_out"), [(SlimTrainRegressor, 1), (GNvproClassifier, 3)]
)
def test_module_survives_torch_export(Estimator, n_out):
    model, X = _fitted(Estimator, n_out)
    module = model.to_torch()
    x = torch.as_tensor(X)
    exported = torch.export.export(module, (x,))
    torch.testing.assert_close(exported.module()(x), module(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("Estimator", "n_out"),
    [(SlimTrainRegressor, 1), (GNvproRegressor, 1), (SlimTrainClassifier, 3)],
)
def test_module_runs_in_onnxruntime(Estimator, n_out):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model, X = _fitted(Estimator, n_out)  # float64 throughout
    module = model.to_torch()
    x = torch.as_tensor(X)
    buffer = io.BytesIO()
    program = torch.onnx.export(module, (x,), dynamo=True, verbose=False)
    program.save(buffer)
    session = ort.InferenceSession(buffer.getvalue())
    (out,) = session.run(None, {session.get_inputs()[0].name: X})
    np.testing.assert_allclose(out, _expected_raw(model, X), rtol=1e-10, atol=1e-10)
