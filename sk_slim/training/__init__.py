"""Training algorithms over (network, tensors): no scikit-learn here."""

from .head import features_of, solve_head, solve_logistic_head
from .slimtrain import half_mse, slimtrain_epoch, slimtrain_step

__all__ = [
    "features_of",
    "half_mse",
    "slimtrain_epoch",
    "slimtrain_step",
    "solve_head",
    "solve_logistic_head",
]
