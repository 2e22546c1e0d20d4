"""sk_slim: scikit-learn estimators for separable neural networks.

A separable network ``f(x) = phi(x; theta) W + b`` has its affine head ``(W, b)``
solved as a regularized least-squares problem (slimTik, Tikhonov with GCV)
instead of being stepped by a learning rate. The numerical core lives in
:mod:`sk_slim.linalg`, the networks in :mod:`sk_slim.networks`, training
algorithms in :mod:`sk_slim.training`, the input encoding in
:mod:`sk_slim.preprocessing`, and shared data generators in
:mod:`sk_slim.datasets`; :func:`save` and :func:`load` store a fitted model in
a file that loading runs no code from.
"""

from ._gnvpro import GNvproRegressor
from ._gnvpro_classifier import GNvproClassifier
from ._slimtrain import SlimTrainRegressor
from ._slimtrain_classifier import SlimTrainClassifier
from .persistence import load, save

__version__ = "0.1.0"

__all__ = [
    "GNvproClassifier",
    "GNvproRegressor",
    "SlimTrainClassifier",
    "SlimTrainRegressor",
    "__version__",
    "load",
    "save",
]
