"""Engineering test functions in torch (float64), for surrogates trained on values
and derivatives (``bench_gradients.py``, issue #29).

Each function is written in torch so that autograd gives its exact input
gradient; its formula and its input distribution are ``uqtestfuns``' (the
reference: ``python benchmarks/gradient_functions.py --check`` compares the torch
values with ``uqtestfuns``' to 1e-10 relative at random inputs, and the autograd
gradients with central differences).

- Report half (the issue's targets are measured on these; all have >= 6 inputs):
  borehole (8), piston (7), OTL circuit (6), wing weight (10).
- Tune half (only used to choose ``grad_weight``; nothing reported as a result):
  robot arm (8), Dette-Pepelyshev 8-D (8), Friedman (6, one inert input).

:func:`values_and_gradients` returns ``y`` (n,) and ``G`` (n, d) = dy/dx in the
raw units of X; :func:`sample` draws inputs from the function's ``prob_input``;
:func:`unit_cube` gives each input's range for a fixed affine map to [0, 1]^d
(the marginal's bounds, or its 0.5% and 99.5% quantiles where it is unbounded).
"""

import argparse
import math
import sys
from typing import NamedTuple

import numpy as np
import torch
import uqtestfuns

# --------------------------------------------------------------- the functions
# Each takes X (n, d) float64 in raw units and returns y (n,).


def borehole(X):
    """Water flow through a borehole (Harper and Gupta 1983), m^3/year."""
    rw, r, Tu, Hu, Tl, Hl, L, Kw = X.unbind(1)
    log_ratio = torch.log(r / rw)
    denom = log_ratio * (1 + 2 * L * Tu / (log_ratio * rw**2 * Kw) + Tu / Tl)
    return 2 * math.pi * Tu * (Hu - Hl) / denom


def piston(X):
    """Cycle time of a piston (Ben-Ari and Steinberg 2007), seconds."""
    M, S, V0, k, P0, Ta, T0 = X.unbind(1)
    A = P0 * S + 19.62 * M - k * V0 / S
    V = S / (2 * k) * (torch.sqrt(A**2 + 4 * k * P0 * V0 * Ta / T0) - A)
    return 2 * math.pi * torch.sqrt(M / (k + S**2 * P0 * V0 * Ta / (T0 * V**2)))


def otl_circuit(X):
    """Mid-point voltage of an OTL push-pull circuit (Ben-Ari and Steinberg
    2007), volts."""
    Rb1, Rb2, Rf, Rc1, Rc2, beta = X.unbind(1)
    Vb1 = 12 * Rb2 / (Rb1 + Rb2)
    bR = beta * (Rc2 + 9)
    denom = bR + Rf
    return (
        (Vb1 + 0.74) * bR / denom + 11.35 * Rf / denom + 0.74 * Rf * bR / (Rc1 * denom)
    )


def wing_weight(X):
    """Weight of a light aircraft's wing (Forrester et al. 2008), lb."""
    Sw, Wfw, A, Lam, q, lam, tc, Nz, Wdg, Wp = X.unbind(1)
    cos = torch.cos(Lam * math.pi / 180)
    return (
        0.036
        * Sw**0.758
        * Wfw**0.0035
        * (A / cos**2) ** 0.6
        * q**0.006
        * lam**0.04
        * (100 * tc / cos) ** -0.3
        * (Nz * Wdg) ** 0.49
        + Sw * Wp
    )


def robot_arm(X):
    """Distance of a four-segment arm's end from the origin (An and Owen 2001)."""
    lengths, theta = X[:, :4], X[:, 4:]
    angles = torch.cumsum(theta, dim=1)  # (n, 4)
    u = (lengths * torch.cos(angles)).sum(1)
    v = (lengths * torch.sin(angles)).sum(1)
    return torch.sqrt(u**2 + v**2)


def dette_8d(X):
    """The 8-D function of Dette and Pepelyshev (2010): the curved 3-D one plus
    logarithms of partial sums."""
    x0, x1, x2 = X[:, 0], X[:, 1], X[:, 2]
    y = (
        4 * (x0 - 2 + 8 * x1 - 8 * x1**2)
        + (3 - 4 * x1) ** 2
        + 16 * torch.sqrt(x2 + 1) * (2 * x2 - 1) ** 2
    )
    for j in range(3, X.shape[1]):
        y = y + (j + 1) * torch.log(1 + X[:, 2:j].sum(1))
    return y


def friedman_6d(X):
    """Friedman et al. (1983): five active inputs and one inert."""
    return (
        10 * torch.sin(math.pi * X[:, 0] * X[:, 1])
        + 20 * (X[:, 2] - 0.5) ** 2
        + 10 * X[:, 3]
        + 5 * X[:, 4]
    )


class TestFunction(NamedTuple):
    torch_function: object  # X (n, d) -> y (n,), torch float64
    uqtestfuns_class: str  # the reference, with its default prob_input
    half: str  # 'report' or 'tune'


FUNCTIONS = {
    "borehole": TestFunction(borehole, "Borehole", "report"),
    "piston": TestFunction(piston, "Piston", "report"),
    "otl_circuit": TestFunction(otl_circuit, "OTLCircuit", "report"),
    "wing_weight": TestFunction(wing_weight, "WingWeight", "report"),
    "robot_arm": TestFunction(robot_arm, "RobotArm", "tune"),
    "dette_8d": TestFunction(dette_8d, "Dette8D", "tune"),
    "friedman_6d": TestFunction(friedman_6d, "Friedman6D", "tune"),
}


def functions_of(half):
    """The names of one half's functions, in order."""
    return [name for name, f in FUNCTIONS.items() if f.half == half]


def reference(name):
    """The ``uqtestfuns`` instance (formula and default ``prob_input``)."""
    return getattr(uqtestfuns, FUNCTIONS[name].uqtestfuns_class)()


# --------------------------------------------------------------- data


def values_and_gradients(name, X_raw):
    """Values and exact input gradients of a test function.

    Parameters
    ----------
    name : str
        A key of :data:`FUNCTIONS`.
    X_raw : ndarray of shape (n, d)
        Inputs in the function's raw units.

    Returns
    -------
    y : ndarray of shape (n,)
    G : ndarray of shape (n, d)
        dy/dx in raw units, by reverse-mode autograd (rows are independent, so
        the gradient of the sum gives every row's gradient at once).
    """
    X = torch.tensor(np.asarray(X_raw, dtype=np.float64), requires_grad=True)
    y = FUNCTIONS[name].torch_function(X)  # (n,)
    (G,) = torch.autograd.grad(y.sum(), X)  # (n, d)
    return y.detach().numpy(), G.numpy()


def sample(name, n, seed):
    """``n`` inputs from the function's ``prob_input``, ``default_rng(seed)``."""
    return reference(name).prob_input.get_sample(n, rng=np.random.default_rng(seed))


def unit_cube(name):
    """Each input's (lower, upper), each (d,), for a fixed map to [0, 1]^d: the
    marginal's bounds where finite and positive-width, else its 0.5% and 99.5%
    quantiles (borehole's normal rw and lognormal r)."""
    lower, upper = [], []
    for marginal in reference(name).prob_input.marginals:
        if marginal.distribution == "uniform":
            lo, hi = marginal.lower, marginal.upper
        else:
            lo, hi = (float(marginal.icdf(np.array([p]))[0]) for p in (0.005, 0.995))
        lower.append(lo)
        upper.append(hi)
    return np.array(lower), np.array(upper)


# --------------------------------------------------------------- the check


def check(n=200, seed=0):
    """Torch values against ``uqtestfuns`` (relative 1e-10) and autograd
    gradients against central differences of ``uqtestfuns``' formula, at random
    inputs of each function's distribution.

    A gradient's discrepancy is measured as the change it makes in y over the
    input's range, relative to y's standard deviation: ``|G - G_fd| * (max x -
    min x) / std(y)`` (entries can be exactly 0: the robot arm's first angle,
    Friedman's inert input). Returns the worst (value, gradient) discrepancy per
    function; raises if one is above 1e-10 or 1e-6.
    """
    worst = {}
    for name in FUNCTIONS:
        X = sample(name, n, seed)
        y, G = values_and_gradients(name, X)
        function = reference(name)
        y_ref = function(X)
        value_error = float(np.max(np.abs(y - y_ref) / np.maximum(np.abs(y_ref), 1)))
        # central differences, a step relative to each entry; the formula itself
        # (function._evaluate), as its __call__ refuses steps past the bounds
        spread = X.max(0) - X.min(0)
        H = 1e-5 * (np.abs(X) + 1e-3 * spread)  # (n, d)
        G_fd = np.empty_like(G)
        for j in range(X.shape[1]):
            E = np.zeros_like(X)
            E[:, j] = H[:, j]
            dy = function._evaluate(X + E) - function._evaluate(X - E)
            G_fd[:, j] = dy / (2 * H[:, j])
        grad_error = float(np.max(np.abs(G - G_fd) * spread / y.std()))
        worst[name] = (value_error, grad_error)
        if value_error > 1e-10 or grad_error > 1e-6:
            raise AssertionError(
                f"{name}: values off by {value_error:.2e} (relative), gradients by "
                f"{grad_error:.2e}"
            )
    return worst


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="run the check")
    args = parser.parse_args()
    for name, f in FUNCTIONS.items():
        print(f"{name:12s} {f.half:6s} {len(reference(name).prob_input.marginals)}")
    if args.check:
        for name, (v, g) in check().items():
            print(f"{name:12s} values {v:.1e}  gradients {g:.1e}  (ok)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
