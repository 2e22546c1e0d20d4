"""The benchmark problems: fixed, standardized train/test splits."""

from sklearn.datasets import load_diabetes, make_friedman1
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sk_slim.datasets import make_cdr_surrogate, make_peaks


def load_problems():
    """Return ``{name: (X_train, X_test, y_train, y_test)}``, X standardized.

    Targets stay in their units (the estimators standardize them internally;
    ``MLPRegressor`` and skorch get them through ``TransformedTargetRegressor``).
    """
    raw = {
        "cdr": make_cdr_surrogate(n_samples=1500, noise=0.01, random_state=0),
        "peaks": make_peaks(n_samples=3000, noise=0.05, random_state=0),
        "friedman1": make_friedman1(n_samples=3000, noise=1.0, random_state=0),
        "diabetes": load_diabetes(return_X_y=True),
    }
    return {name: split_and_scale(X, y) for name, (X, y) in raw.items()}


def split_and_scale(X, y, stratify=False):
    """A 75/25 split (``random_state=0``) with X standardized on the training part."""
    split = train_test_split(
        X, y, test_size=0.25, random_state=0, stratify=y if stratify else None
    )
    X_train, X_test, y_train, y_test = split
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test
