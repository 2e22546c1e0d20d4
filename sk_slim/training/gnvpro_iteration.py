"""One GNvpro outer iteration, its inner solve and its globalization.

Gauss-Newton on the variable-projection reduced objective.

:func:`gnvpro_step` linearizes the reduced problem at the current ``theta``
(``reduced.py``, ``gnvpro_logistic.py``), solves the Gauss-Newton system by
truncated CG (``gauss_newton.py``: the operator and its preconditioner) and
globalizes the step by a trust region or an Armijo line search (Newman et al.
2021, Algorithm 1). :class:`GNvproState` carries what one iteration hands the
next.

References
----------
Newman, Ruthotto, Hart, van Bloemen Waanders (2021), "Train Like a (Var)Pro:
Efficient Training of Neural Networks with Variable Projection", SIAM J. Math.
Data Sci. 3(4).
"""

import math
from dataclasses import dataclass

import torch

from ..linalg import cg, steihaug_cg
from .gauss_newton import _StepSpace

__all__ = ["GNvproState", "gnvpro_step"]


@dataclass
class GNvproState:
    """Where a GNvpro run stands between outer iterations.

    Attributes
    ----------
    radius : float or None
        The trust radius; None before the first step.
    head_alpha : float
        The head's ridge weight ``alpha_W`` of the last iteration.
    grad_norm : float
        Norm of the reduced gradient at the start of the last iteration.
    accepted : bool
        Whether the last iteration accepted a step.
    step_norm : float
        Length of that step in the inner solve's coordinates (the
        preconditioner's norm; 0 when none was accepted, inf after Armijo fell
        back on the negative gradient).
    n_iter : int
        Outer iterations run (over warm starts: the continuation goes on).
    first_grad_norm : float
        The reduced gradient's norm at the first iteration (for ``tol``).
    work_units : float
        Passes over the data so far (see :class:`ReducedProblem`).
    continuation_over : bool
        Whether the run goes on without the continuation on the theta
        penalty: restarted from the call's starting network after the run along
        it (see :meth:`GNvproTrainer.next_run`).
    compared : bool
        Whether a run without the continuation has been made for comparison
        (``compare_without_continuation``); made once, not again on warm starts.
    """

    radius: float | None = None  # trust radius; None before the first step
    head_alpha: float = math.nan
    grad_norm: float = math.nan
    accepted: bool = False
    step_norm: float = 0.0
    n_iter: int = 0
    first_grad_norm: float = math.nan
    work_units: float = 0
    continuation_over: bool = False
    compared: bool = False


def gnvpro_step(
    problem,
    state,
    *,
    head_alpha="gcv",
    globalization="trust_region",
    krylov_max_iter=20,
    krylov_tol=1e-2,
    max_trials=8,
    preconditioner="auto",
    curvature_rows=None,
    start=None,
):
    """One outer Gauss-Newton iteration on the reduced objective.

    Parameters
    ----------
    problem : ReducedProblem
        Its network's parameters are updated in place when a step is accepted.
    state : GNvproState
        Trust radius and diagnostics; updated in place.
    head_alpha : 'gcv' or float, default='gcv'
        The head's ridge weight: chosen by GCV at the current ``theta`` (and held
        for this iteration, so the objective is consistent within it) or fixed.
    globalization : {'trust_region', 'armijo'}, default='trust_region'
        Steihaug-CG inside a trust region (halve the radius when
        rho < 0.1, grow it 1.5-fold when rho > 0.75 at the boundary),
        or CG followed by Armijo backtracking (c1 = 1e-4, halving).
    krylov_max_iter : int, default=20
        Maximum number of CG iterations of the inner solve.
    krylov_tol : float, default=1e-2
        Relative residual tolerance of the inner CG solve.
    max_trials : int, default=8
        Rejected trust-region steps (or halvings) before giving up this iteration.
    preconditioner : {'auto', None} or callable, default='auto'
        'auto' preconditions CG with Kaufman's Gauss-Newton matrix
        (``problem.kaufman_factor``, None where the problem has none or it is
        too costly to form); the trust region is then measured in that
        matrix's norm. A callable ``(problem, lin, step_norm) -> factor or
        None`` supplies the factor instead (e.g. a
        :class:`~sk_slim.training.gauss_newton.ReusedKaufmanFactor`;
        ``step_norm``: the previous iteration's, ``state.step_norm``).
    curvature_rows : Tensor of shape (m,), default=None
        Rows whose problem supplies the Gauss-Newton matrix (and the
        preconditioner) of the inner solve: ``problem.on_rows(curvature_rows)``,
        its head solved on those rows with this iteration's ``alpha_W``. The
        gradient, the objective and the step's acceptance stay on all rows
        (sub-sampled curvature, Byrd et al. 2011). None: all rows.
    start : object, default=None
        The linearization the previous iteration ended at (its
        ``problem.current``), on the same rows: where it is at the current
        ``theta`` and the problem can rebuild from it
        (``problem.reuses_trial``), its features and factors are reused
        instead of a new forward pass and SVD (:meth:`ReducedProblem.relinearize`);
        the iteration is the same.

    Returns
    -------
    value : float
        The reduced objective after the iteration (unchanged if no step was
        accepted). ``problem.current`` is then the linearization there.

    References
    ----------
    Byrd, Chin, Neveitt, Nocedal (2011), "On the use of stochastic Hessian
    information in optimization methods for machine learning", SIAM J. Optim.
    21(3).
    """
    theta = problem.get_theta()
    reusable = (
        problem.reuses_trial
        and start is not None
        and start.maps is not None
        and torch.equal(start.theta, theta)
    )
    if reusable:
        lin = problem.relinearize(start, head_alpha)
    else:
        lin = problem.linearize(theta, head_alpha, differentiable=True)
    if lin is None:
        raise FloatingPointError("The learned features are not finite.")
    state.head_alpha = lin.head_alpha
    g = problem.gradient(lin)
    state.grad_norm = float(torch.linalg.vector_norm(g))
    curvature, curvature_lin = problem, lin
    if curvature_rows is not None:  # Byrd et al.: the curvature of a row sample
        curvature = problem.on_rows(curvature_rows)
        curvature_lin = curvature.linearize(
            lin.theta, lin.head_alpha, differentiable=True
        )
        if curvature_lin is None:  # non-finite features on the sample
            raise FloatingPointError("The learned features are not finite.")
    factor = None
    if preconditioner == "auto":
        factor = curvature.kaufman_factor(curvature_lin)
    elif callable(preconditioner):  # a factor kept over iterations
        factor = preconditioner(curvature, curvature_lin, state.step_norm)
    space = _StepSpace.of(curvature.gauss_newton(curvature_lin), g, factor)
    globalize = _armijo if globalization == "armijo" else _trust_region
    current = globalize(
        problem, state, lin, g, space, krylov_max_iter, krylov_tol, max_trials
    )
    if curvature is not problem:  # its passes, as fractions of a full pass
        sampled, total = problem.rows.sum_floats(len(curvature.X), len(problem.X))
        problem.work_units += curvature.work_units * sampled / total
    problem.net.set_head(current.W)  # the optimal head of the current theta
    problem.current = current
    return current.value


def _trust_region(problem, state, lin, g, space, max_iter, tol, trials):
    if state.radius is None:  # first step: the radius of the full Krylov step
        first = cg(space.matvec, space.rhs, rtol=tol, max_iter=max_iter)
        state.radius = float(torch.linalg.vector_norm(first.x)) or 1.0
    state.accepted, state.step_norm = False, 0.0
    for _ in range(trials):
        sol = steihaug_cg(
            space.matvec, space.rhs, state.radius, rtol=tol, max_iter=max_iter
        )
        step_norm = float(torch.linalg.vector_norm(sol.x))
        if step_norm == 0:  # a zero gradient (or float32 underflow): nowhere to go
            break
        trial = problem.trial_linearize(
            lin.theta + space.to_theta(sol.x), lin.head_alpha
        )
        actual = lin.value - trial.value if trial is not None else -math.inf
        predicted = sol.predicted_reduction
        rho = actual / predicted if predicted > 0 else -math.inf
        if rho < 1e-4:  # reject and shrink
            state.radius = 0.5 * min(state.radius, step_norm)
            continue
        problem.set_theta(trial.theta)
        state.accepted, state.step_norm = True, step_norm
        if rho < 0.1:
            state.radius *= 0.5
        elif rho > 0.75 and step_norm >= 0.99 * state.radius:
            state.radius *= 1.5
        return trial
    return lin


def _armijo(problem, state, lin, g, space, max_iter, tol, trials):
    y = cg(space.matvec, space.rhs, rtol=tol, max_iter=max_iter).x
    step, y_norm = space.to_theta(y), float(torch.linalg.vector_norm(y))
    slope = float(g @ step)
    if slope >= 0:  # not a descent direction (inexact solve): fall back on -g
        step, slope, y_norm = -g, -float(g @ g), math.inf
    t, state.accepted, state.step_norm = 1.0, False, 0.0
    for _ in range(trials):
        trial = problem.trial_linearize(lin.theta + t * step, lin.head_alpha)
        if trial is not None and trial.value <= lin.value + 1e-4 * t * slope:
            problem.set_theta(trial.theta)
            state.accepted, state.step_norm = True, t * y_norm
            return trial
        t *= 0.5
    return lin
