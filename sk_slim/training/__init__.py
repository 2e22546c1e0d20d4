"""Training algorithms over (network, tensors): no scikit-learn here.

Each algorithm is a trainer (:class:`Trainer`): slimTrain
(:class:`SlimTrainTrainer`) and GNvpro (:class:`GNvproTrainer`).
"""

from .derivative_data import (
    DerivativeData,
    DerivativeReducedProblem,
    held_out_stacked_r2,
)
from .gnvpro import GNvproConfig, GNvproState, GNvproTrainer, gnvpro_step
from .gnvpro_logistic import ReducedLogisticProblem
from .head import (
    HeadPosterior,
    features_of,
    head_posterior,
    held_out_noise,
    ridge_head,
    solve_head,
    solve_logistic_head,
    validated_logistic_head,
)
from .input_derivatives import input_jacobian, stacked_features
from .numpy_step import NumpyStep
from .protocol import FitData, Trainer
from .reduced import ReducedProblem
from .slimtrain import SlimTrainConfig, SlimTrainState, SlimTrainTrainer, make_slimtik
from .slimtrain_steps import half_mse, lsgd_epoch, slimtrain_epoch, slimtrain_step

__all__ = [
    "DerivativeData",
    "DerivativeReducedProblem",
    "FitData",
    "GNvproConfig",
    "GNvproState",
    "GNvproTrainer",
    "HeadPosterior",
    "NumpyStep",
    "ReducedLogisticProblem",
    "ReducedProblem",
    "SlimTrainConfig",
    "SlimTrainState",
    "SlimTrainTrainer",
    "Trainer",
    "features_of",
    "gnvpro_step",
    "half_mse",
    "head_posterior",
    "held_out_noise",
    "held_out_stacked_r2",
    "input_jacobian",
    "lsgd_epoch",
    "make_slimtik",
    "ridge_head",
    "slimtrain_epoch",
    "slimtrain_step",
    "solve_head",
    "solve_logistic_head",
    "stacked_features",
    "validated_logistic_head",
]
