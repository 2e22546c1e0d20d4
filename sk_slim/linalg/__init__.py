"""Numerical kernels on tensors: Tikhonov/GCV, slimTik, Krylov solvers.

Pure torch, float64 head algebra, any device; no scikit-learn and no
``nn.Module`` here (the estimators and training loops build on these).
"""

from .krylov import KrylovResult, cg, lsqr, steihaug_cg
from .slimtik import SlimTik, SlimTikState
from .tikhonov import GCVResult, TikhonovSVD, gcv, tikhonov_factor, tikhonov_svd

__all__ = [
    "GCVResult",
    "KrylovResult",
    "SlimTik",
    "SlimTikState",
    "TikhonovSVD",
    "cg",
    "gcv",
    "lsqr",
    "steihaug_cg",
    "tikhonov_factor",
    "tikhonov_svd",
]
