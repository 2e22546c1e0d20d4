"""SlimTrainClassifier's final head: a validated logistic head on the learned
features for three or more classes, least squares with a temperature for two."""

import warnings

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from sk_slim import SlimTrainClassifier
from sk_slim.networks import SeparableNet
from sk_slim.training import validated_logistic_head
from sk_slim.training.head import LOGISTIC_HEAD_PATH


def _ordered_classes(n, random_state=0):
    """One input; class 0, 1, 2 on three consecutive intervals (plus 3 inert
    noise inputs), the textbook case of masking (Hastie, Tibshirani and
    Friedman, The Elements of Statistical Learning, 2009, section 4.2)."""
    rng = np.random.RandomState(random_state)
    X = rng.uniform(-1.5, 1.5, size=(n, 4))
    y = np.digitize(X[:, 0], [-0.5, 0.5])
    return X, y


def _fit(**params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return SlimTrainClassifier(random_state=0, **params).fit(*_ordered_classes(600))


def test_least_squares_masks_the_middle_class_and_the_logistic_head_does_not():
    # Linear features: least squares on one-hot targets never ranks the middle
    # class first, a logistic head on the same features does.
    linear = {"hidden_layer_sizes": (4,), "activation": "identity", "max_iter": 20}
    X_test, y_test = _ordered_classes(2000, random_state=1)
    masked = _fit(final_head="least_squares", **linear)
    assert masked.final_head_ == "least_squares"
    assert np.mean(masked.predict(X_test) == 1) < 0.1
    assert masked.score(X_test, y_test) < 0.75
    default = _fit(**linear)
    assert default.final_head_ == "logistic"
    assert default.score(X_test, y_test) > 0.93


def test_logistic_head_is_the_model_predict_proba_and_coef_describe():
    model = _fit(hidden_layer_sizes=(8,), max_iter=10)
    X, _ = _ordered_classes(50, random_state=2)
    logits = model.transform(X) @ model.coef_ + model.intercept_
    assert model.temperature_ == 1.0
    np.testing.assert_allclose(model.predict_proba(X), softmax(logits, axis=1))
    np.testing.assert_array_equal(model.predict(X), logits.argmax(axis=1))
    # 600 rows: a validation split, so the ridge weight is one of the path's.
    n_train = 600 - 60
    assert min(abs(model.head_alpha_ * n_train - s) for s in LOGISTIC_HEAD_PATH) < 1e-9


def test_two_classes_keep_least_squares_and_partial_fit_the_streamed_head():
    X, y = _ordered_classes(300)
    binary = SlimTrainClassifier(max_iter=5, random_state=0).fit(X, y > 0)
    assert binary.final_head_ == "least_squares"
    streamed = SlimTrainClassifier(random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    assert streamed.final_head_ == "least_squares"
    assert streamed.temperature_ != 1.0


def _reference_path(Z, Y, Z_val, y_val, n):
    """sklearn's LogisticRegression along the path (C = 1 / (n alpha), the bias
    penalized as a feature), with the same stopping rule: the least held-out
    log-loss before two solves in a row that do not lower it."""
    labels = Y.argmax(axis=1)
    best, rises = (np.inf, None, None), 0
    for scaled in sorted(LOGISTIC_HEAD_PATH, reverse=True):
        model = LogisticRegression(
            C=1.0 / scaled,
            fit_intercept=False,
            solver="newton-cg",  # lbfgs stops ~1e-5 short of the minimizer
            tol=1e-12,
            max_iter=1000,
        )
        model.fit(Z, labels)
        loss = log_loss(y_val, model.predict_proba(Z_val), labels=[0, 1, 2])
        rises = 0 if loss < best[0] else rises + 1
        if loss < best[0]:
            best = (loss, scaled / n, model.coef_.T)
        if rises == 2:
            break
    return best


@pytest.mark.parametrize("seed", range(8))
def test_validated_logistic_head_matches_logistic_regression(seed):
    rng = np.random.RandomState(seed)
    n, n_val, m = 300, 100, 5
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        extractor = torch.nn.Sequential(torch.nn.Linear(2, m), torch.nn.Tanh())
    net = SeparableNet(extractor, m, 3).double()
    X = torch.as_tensor(rng.normal(size=(n + n_val, 2)))
    # Noisy labels: the held-out loss has an interior minimum over the path.
    y = (X[:, 0] + 0.8 * torch.as_tensor(rng.normal(size=n + n_val)) > 0).long()
    y = y + (X[:, 1] > 1).long()
    Y = torch.nn.functional.one_hot(y, 3).double()
    alpha = validated_logistic_head(net, X[:n], Y[:n], None, X[n:], Y[n:])

    with torch.no_grad():
        Z = net.augment(net.features(X)).numpy()
    _, expected_alpha, expected_W = _reference_path(
        Z[:n], Y[:n].numpy(), Z[n:], y[n:].numpy(), n
    )
    assert alpha == pytest.approx(expected_alpha, rel=1e-12)
    W = net.augmented_head.detach().numpy()
    # Softmax is invariant to a shift of every class's weights; the ridge
    # makes the solution's column sums zero in both.
    np.testing.assert_allclose(W, expected_W, atol=1e-7 * np.abs(W).max())


def test_gnvpro_classifier_validates_the_returned_heads_ridge():
    from sk_slim import GNvproClassifier

    X, y = _ordered_classes(600)
    params = {"hidden_layer_sizes": (8,), "max_iter": 5, "random_state": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        validated = GNvproClassifier(**params).fit(X, y)
        fixed = GNvproClassifier(head_alpha=1e-3, **params).fit(X, y)
        no_split = GNvproClassifier(early_stopping=False, **params).fit(X, y)
    n_train = 600 - 60
    path = [s / n_train for s in LOGISTIC_HEAD_PATH]
    assert min(abs(validated.head_alpha_ - a) for a in path) < 1e-12
    logits = validated.transform(X) @ validated.coef_ + validated.intercept_
    np.testing.assert_allclose(validated.predict_proba(X), softmax(logits, axis=1))
    assert fixed.head_alpha_ == 1e-3
    assert no_split.head_alpha_ == pytest.approx(1 / 600)
