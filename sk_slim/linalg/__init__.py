"""Numerical kernels on tensors: Tikhonov/GCV, slimTik, Krylov solvers,
the logistic head.

Pure torch, float64 head algebra, any device; no scikit-learn and no
``nn.Module`` here (the estimators and training loops build on these).
"""

from .krylov import KrylovResult, cg, lsqr, steihaug_cg
from .logistic import (
    LogisticResult,
    fit_temperature,
    logistic_head,
    logistic_hessian,
    logistic_hessian_dense,
    logistic_loss,
    softmax_jacobian_product,
)
from .slimtik import SlimTik, SlimTikState
from .tikhonov import (
    GCVResult,
    TikhonovSVD,
    gcv,
    streamed_tikhonov_factor,
    tikhonov_factor,
    tikhonov_svd,
)

__all__ = [
    "GCVResult",
    "KrylovResult",
    "LogisticResult",
    "SlimTik",
    "SlimTikState",
    "TikhonovSVD",
    "cg",
    "fit_temperature",
    "gcv",
    "logistic_head",
    "logistic_hessian",
    "logistic_hessian_dense",
    "logistic_loss",
    "lsqr",
    "softmax_jacobian_product",
    "steihaug_cg",
    "streamed_tikhonov_factor",
    "tikhonov_factor",
    "tikhonov_svd",
]
