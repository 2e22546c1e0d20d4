"""Sampled limited-memory Tikhonov (slimTik) with sampled GCV (Newman et al. 2022).

slimTik updates the head ``W`` of a separable network one mini-batch at a time,
with no learning rate: a recursive regularized least-squares step whose
curvature comes from the last ``r + 1`` batches and whose regularization
increment is chosen per batch by sampled GCV over a grid of trial points.

Samples are in rows: batch features ``Z`` (n, p), targets ``C`` (n, c), head
``W`` (p, c), ``C ≈ Z W`` (the papers write the transpose).

The algebra is written once for torch tensors and for arrays of the array API
(numpy's): a batch is updated in the namespace of its arrays, which must be that
of the state (``sk_slim.training.NumpyStep`` holds a CPU state as numpy views
for an epoch). At a mini-batch's sizes a torch operation's dispatch costs
several times a numpy one's, and an update is some thirty of them.
"""

import functools
import math
from collections import deque
from dataclasses import dataclass, field, replace
from numbers import Integral, Real

import torch
from torch import Tensor

from ..rows import LOCAL_ROWS

__all__ = ["SlimTik", "SlimTikState"]

_DTYPE = torch.float64
# The floor (and start) of Lambda_k: see the class docstring.
_LOWER_BOUND = 1e-3


@dataclass
class SlimTikState:
    """Where a slimTik run stands: everything :meth:`SlimTik.update` changes.

    Attributes
    ----------
    W : Tensor of shape (p, c)
        The current head (float64).
    Lambda : float
        Running sum of the regularization increments, ``Lambda_k >= lower_bound``.
    grams : deque of Tensor of shape (p, p)
        Grams ``Z_j^T Z_j`` of the scaled batches in memory (the last ``r + 1``);
        with unlimited memory, a single running sum.
    n_updates : int
        Number of batches seen, ``k``.
    lam : float
        The last increment ``lambda_k`` (may be negative).
    sgcv : float
        The sampled GCV value at ``lambda_k`` (nan for a constant increment).
    """

    W: Tensor
    Lambda: float
    grams: deque = field(default_factory=deque)
    n_updates: int = 0
    lam: float = math.nan
    sgcv: float = math.nan

    @property
    def alpha(self):
        """Effective ridge weight per batch, ``Lambda_k / (k + 1)`` (diagnostic)."""
        return self.Lambda / (self.n_updates + 1)

    def clone(self):
        """Return a copy that later updates cannot change (to undo a diverged step).

        Returns
        -------
        state : SlimTikState
            An independent copy on the same device.
        """
        return self.to(self.W.device)

    def to(self, device):
        """Return a copy with its tensors on ``device`` (always a new copy).

        Parameters
        ----------
        device : torch.device or str
            Where the copy's tensors live.

        Returns
        -------
        state : SlimTikState
            The copy.
        """
        grams = deque(
            (g.to(device, copy=True) for g in self.grams), maxlen=self.grams.maxlen
        )
        return replace(self, W=self.W.to(device, copy=True), grams=grams)


class SlimTik:
    """Sampled limited-memory Tikhonov solver for the head of a separable net.

    Parameters
    ----------
    n_features : int
        Number of feature columns ``p`` (include the column of ones if the
        bias is part of ``W``).
    n_targets : int
        Number of target columns ``c``.
    memory_depth : int or None, default=5
        Number ``r`` of previous batches whose Grams are kept beside the current
        one. ``None`` keeps all of them (in one running sum, O(p^2) memory): the
        update is then exactly recursive ridge regression.
    lam : 'sgcv' or float, default='sgcv'
        The per-batch increment ``lambda_k`` of the regularization: chosen by
        sampled GCV over trial points, or a constant (ablation, and tests).
    lam_init : float, default=1e-3
        ``Lambda_0``. The initial head ``W0`` acts as the centre of a ridge
        prior of this weight, so keep it small.
    lower_bound : float, default=1e-3
        Lower bound on ``Lambda_k``; keeps the system positive definite. The
        paper's code uses 1e-7, which let sampled GCV drive ``Lambda`` to the
        floor on every batch of a separable network's training, and the
        streamed head then blew up along near-null feature directions
        (``SlimTrainRegressor.partial_fit`` on peaks: test R^2 -11.9); 1e-3,
        the scale of the GCV-optimal full-data ridge weight times ``r + 1``
        on standardized problems, gave 0.80.
    upper_bound : float, default=1e3
        Largest positive trial increment.
    n_trials : int, default=30
        Trial points per sign (log-spaced magnitudes), plus ``lambda = 0``.
    sgcv_every : int, default=1
        With ``lam='sgcv'``: sampled GCV chooses the increment on the first
        batch and then on every ``sgcv_every``-th; the batches between keep
        ``Lambda`` (increment 0) and take the update by one linear solve
        instead of the memory Gram's eigendecomposition and the trial sweep
        (1: every batch, as published).
    W0 : Tensor of shape (p, c), default=None
        Initial head; zeros by default.
    device : torch.device, default=None
        Where the state lives; batches must be on the same device.

    Attributes
    ----------
    state : SlimTikState
        The mutable state; :meth:`update` replaces ``state.W`` and friends.
    batch_samples : float
        The samples the last update's batch stood for (its weight sum, over
        all processes when its rows are split); nan before the first.

    Notes
    -----
    With both batch blocks scaled by ``1/sqrt(n)`` (a mean over the batch),
    ``R0 = Z W_{k-1} - C`` and
    ``G(mu) = sum_{j in memory} Z_j^T Z_j + mu I``,

        W_k = W_{k-1} - G(Lambda_k)^{-1} (Z^T R0 + lambda_k W_{k-1}),

    with ``Lambda_k = Lambda_{k-1} + lambda_k``. One eigendecomposition of the
    memory Gram serves the update and every trial ``lambda`` of sampled GCV,
    ``G_k(lambda) = ||Z W(lambda) - C||_F^2 / (n c - c tr(Z G(mu)^{-1} Z^T))^2``.
    The trial grid follows the authors' Python code: positive magnitudes
    log-spaced in ``[lower_bound, upper_bound]``, negative ones in
    ``[lower_bound, Lambda_{k-1}]``; ``Lambda_k`` is clipped at ``lower_bound``.

    References
    ----------
    Newman, Chung, Chung, Ruthotto (2022), "slimTrain - A Stochastic
    Approximation Method for Training Separable Deep Neural Networks",
    SIAM J. Sci. Comput. 44(4).
    Slagel, Chung, Chung, Kozak, Tenorio (2019), "Sampled Tikhonov
    regularization for large linear inverse problems", Inverse Problems 35.
    """

    def __init__(
        self,
        n_features,
        n_targets,
        *,
        memory_depth=5,
        lam="sgcv",
        lam_init=_LOWER_BOUND,
        lower_bound=_LOWER_BOUND,
        upper_bound=1e3,
        n_trials=30,
        sgcv_every=1,
        W0=None,
        device=None,
    ):
        if memory_depth is not None and memory_depth < 0:
            raise ValueError(f"memory_depth must be >= 0 or None, got {memory_depth}.")
        real = isinstance(lam, Real) and not isinstance(lam, bool)
        if lam != "sgcv" and not (real and lam >= 0):
            raise ValueError(f"lam must be 'sgcv' or a float >= 0, got {lam!r}.")
        if not 0 < lower_bound < upper_bound:
            raise ValueError("Need 0 < lower_bound < upper_bound.")
        integral = isinstance(sgcv_every, Integral) and not isinstance(sgcv_every, bool)
        if not (integral and sgcv_every >= 1):
            raise ValueError(f"sgcv_every must be an int >= 1, got {sgcv_every!r}.")
        self.n_features = n_features
        self.n_targets = n_targets
        self.memory_depth = memory_depth
        self.lam = lam
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound
        self.n_trials = n_trials
        self.sgcv_every = int(sgcv_every)
        self.batch_samples = math.nan
        if W0 is None:
            W0 = torch.zeros(n_features, n_targets, dtype=_DTYPE, device=device)
        W0 = W0.to(dtype=_DTYPE, device=device).reshape(n_features, n_targets)
        maxlen = None if memory_depth is None else memory_depth + 1
        self.state = SlimTikState(
            W=W0.clone(),
            Lambda=max(float(lam_init), lower_bound),
            grams=deque(maxlen=maxlen),
        )

    @property
    def W(self):
        """The current head, shape (p, c), float64."""
        return self.state.W

    def update(self, Z, C, sample_weight=None, rows=LOCAL_ROWS):
        """Take one slimTik step on a mini-batch and return the new head.

        Parameters
        ----------
        Z : Tensor or ndarray of shape (n, p)
            Batch features (detached; any float dtype, cast to float64). A
            numpy batch (``C`` and ``sample_weight`` numpy too, ``rows``
            local) is updated in numpy, on a state held as numpy arrays.
        C : Tensor or ndarray of shape (n, c)
            Batch targets.
        sample_weight : Tensor or ndarray of shape (n,), default=None
            Non-negative weights, read as repetitions: the batch loss is the
            weighted mean ``sum_i w_i ||z_i W - c_i||^2 / sum_i w_i`` and the
            sGCV residual count is ``c sum_i w_i``.
        rows : RowGroup, default=LOCAL_ROWS
            When the batch's rows are split over processes
            (:mod:`sk_slim.rows`): the batch is all processes'
            rows together, and its statistics are summed over them.
            ``LOCAL_ROWS``: all of the batch is here.

        Returns
        -------
        W : Tensor or ndarray of shape (p, c)
            The updated head (float64), of the batch's kind; also stored in
            :attr:`state`.
        """
        state = self.state
        xp = _namespace(Z)
        choose = self.lam == "sgcv" and state.n_updates % self.sgcv_every == 0
        batch = self._prepare(Z, C, sample_weight, rows, decompose=choose)
        if choose:
            lams = self.trial_increments(xp)
            if xp is torch:
                lams = lams.to(batch.V.device)
            scores = self._sgcv_values(batch, lams)
            best = int(xp.argmin(scores))
            lam, score = float(lams[best]), float(scores[best])
        elif self.lam == "sgcv":
            # Between choices Lambda stays. Repeating the last increment instead
            # compounded one batch's choice (4x the error on a step function).
            lam, score = 0.0, math.nan
        else:
            lam, score = float(self.lam), math.nan
        Lambda = max(state.Lambda + lam, self.lower_bound)
        lam = Lambda - state.Lambda

        rhs = batch.ZtR0 + lam * state.W  # (p, c)
        if batch.V is None:
            state.W = state.W - _solve_shifted(batch.memory, Lambda, rhs, xp)
        else:
            V, eigvals = batch.V, batch.eigvals
            rhs = V.T @ rhs
            state.W = state.W - V @ (rhs / (eigvals + Lambda)[:, None])  # (p, c)
        state.Lambda, state.lam, state.sgcv = Lambda, lam, score
        state.n_updates += 1
        self._remember(batch.gram)
        self.batch_samples = batch.n_samples
        return state.W

    def sgcv(self, Z, C, lams, sample_weight=None):
        """Sampled GCV function that the next :meth:`update` on this batch minimises.

        Does not change the state (for diagnostics, plots and tests).

        Parameters
        ----------
        Z : Tensor of shape (n, p)
            Batch features.
        C : Tensor of shape (n, c)
            Batch targets.
        lams : Tensor of shape (T,)
            Trial increments ``lambda``, with ``Lambda_{k-1} + lambda > 0``.
        sample_weight : Tensor of shape (n,), default=None
            As in :meth:`update`.

        Returns
        -------
        G : Tensor of shape (T,)
            ``inf`` where the residual count ``n c - t(lambda)`` is not positive.
        """
        batch = self._prepare(Z, C, sample_weight)
        lams = torch.as_tensor(lams, dtype=_DTYPE, device=batch.V.device)
        return self._sgcv_values(batch, lams.reshape(-1))

    def trial_increments(self, xp=torch):
        """The trial ``lambda`` grid for the next update.

        Increments that would take ``Lambda`` below ``lower_bound`` are clipped
        to ``lower_bound - Lambda``.

        Parameters
        ----------
        xp : module, default=torch
            The array namespace of the grid: torch, or an array API's (numpy).

        Returns
        -------
        lams : array of shape (2 n_trials + 1,)
            Sorted trial increments (float64); those clipped repeat the clip.
        """
        Lambda, lb = self.state.Lambda, self.lower_bound
        positive, fractions = _trial_grids(lb, self.upper_bound, self.n_trials, xp)
        # Magnitudes log-spaced from Lambda down to lb, in two operations.
        negative = lb * (max(Lambda, lb) / lb) ** fractions
        trials = xp.concat([-negative, positive])
        # Ascending already: clipping leaves equal values side by side, which
        # score alike, so argmin picks what it would pick among unique values.
        return xp.clip(trials, lb - Lambda, None)

    def _prepare(self, Z, C, sample_weight, rows=LOCAL_ROWS, decompose=True):
        """Reduce the batch to its (weighted) sums over rows, scaled to a mean,
        and (with ``decompose``) decompose the memory Gram it will join."""
        n = Z.shape[0]
        xp = _namespace(Z)
        W = self.state.W
        Z = _float64(Z, xp)  # (n, p)
        # (n, c); explicit c: an empty batch (a process with few rows) has n = 0.
        C = _float64(C, xp).reshape(n, W.shape[1])
        if sample_weight is None:
            n_eff = float(n)
        else:
            # Rows scaled by sqrt(w): integer weights act exactly as repeated rows.
            if xp is torch:
                weight = torch.as_tensor(sample_weight, dtype=_DTYPE, device=Z.device)
            else:
                weight = _float64(sample_weight, xp)
            n_eff = weight.sum()
            root = xp.sqrt(weight)[:, None]  # (n, 1)
            Z, C = root * Z, root * C
        R0 = Z @ W - C  # (n, c)
        gram = Z.T @ Z  # (p, p)
        sums = (Z.T @ R0, (R0**2).sum(), n_eff)
        if rows.distributed:  # the batch's rows on all processes
            if sample_weight is None:
                sums = (*sums[:2], Z.new_tensor(n_eff))
            gram, *sums = _sum_symmetric(rows, gram, *sums)
        ZtR0, R0_norm2, n_eff = sums
        # A weight sum is read back (a sync on a device); a count is a float.
        n_eff = float(n_eff)
        if not n_eff > 0:
            raise ValueError("The batch's sample weights sum to zero.")
        # Divided by sum(w): the batch loss is a weighted mean.
        gram, ZtR0, R0_norm2 = gram / n_eff, ZtR0 / n_eff, R0_norm2 / n_eff
        memory = self._memory_gram_with(gram)
        batch = _Batch(ZtR0, R0_norm2, n_eff, C.shape[1], gram, memory)
        if not decompose:
            return batch
        try:
            eigvals, V = xp.linalg.eigh(memory)  # ascending
        except xp.linalg.LinAlgError:  # non-finite (numpy raises, torch gives nan)
            eigvals, V = memory[0] * math.nan, memory * math.nan
        return replace(batch, V=V, eigvals=xp.clip(eigvals, 0.0, None))

    def _memory_gram_with(self, gram):
        """``sum_j Z_j^T Z_j`` over the memory once ``gram`` has joined it."""
        grams = list(self.state.grams)
        if len(grams) == self.state.grams.maxlen:
            grams = grams[1:]  # the oldest batch leaves as the new one joins
        return sum(grams, gram)

    def _remember(self, gram):
        """Add a batch Gram to memory; unlimited memory keeps a running sum."""
        grams = self.state.grams
        if self.memory_depth is None and grams:
            grams[0] = grams[0] + gram
        else:
            grams.append(gram)  # a bounded deque drops the oldest

    def _sgcv_values(self, batch, lams):
        """Closed-form sGCV at trial increments, in p x p algebra only.

        In the eigenbasis ``V`` of the memory Gram, with ``d = 1/(e + mu)``, the
        trial residual is ``R0 - Z V diag(d) (A + lam B)``, ``A = V^T Z^T R0`` and
        ``B = V^T W``. Its squared norm expands to
        ``||R0||^2 - 2 d.(a + lam ab) + d^T (K_AA + lam K_AB + lam^2 K_BB) d``
        with ``K = V^T Z^T Z V`` and ``K_XY = K * (X Y^T)`` (elementwise), so each
        trial costs O(p^2) instead of O(n p c), and no (n, p) product is formed.
        The trace term is ``c d . diag(K)``.
        """
        V = batch.V
        xp = _namespace(V)
        mu = self.state.Lambda + lams  # (T,)
        d = 1.0 / (batch.eigvals + mu[:, None])  # (T, p)
        K = V.T @ batch.gram @ V  # (p, p)
        A = V.T @ batch.ZtR0  # (p, c)
        B = V.T @ self.state.W  # (p, c)
        AA, AB, BB = A @ A.T, A @ B.T, B @ B.T  # (p, p) each
        quad = xp.stack([K * AA, K * (AB + AB.T), K * BB])  # (3, p, p)
        forms = ((d @ quad) * d).sum(axis=2)  # (3, T): d^T K_XY d per trial
        cross = d @ AA.diagonal() + lams * (d @ AB.diagonal())  # (T,)
        rho = batch.R0_norm2 - 2.0 * cross + forms[0] + lams * forms[1]
        rho = rho + lams**2 * forms[2]
        c = batch.n_targets
        residual_count = batch.n_samples * c - c * (d @ K.diagonal())  # (T,)
        return xp.where(residual_count > 0, rho / residual_count**2, math.inf)


def _namespace(array):
    """The array module of ``array``: torch, or its array API namespace."""
    return torch if isinstance(array, Tensor) else array.__array_namespace__()


def _solve_shifted(memory, Lambda, rhs, xp):
    """``(memory + Lambda I)^{-1} rhs``; nan where the system is not finite."""
    if xp is torch:
        eye = torch.eye(memory.shape[0], dtype=memory.dtype, device=memory.device)
    else:
        eye = xp.eye(memory.shape[0], dtype=memory.dtype)
    shifted = memory + Lambda * eye
    try:
        return xp.linalg.solve(shifted, rhs)
    except xp.linalg.LinAlgError:  # numpy on a non-finite system
        return rhs * math.nan


def _float64(x, xp):
    """``x`` as float64 in ``xp`` (no copy if it is already)."""
    return xp.asarray(x, dtype=xp.float64)


@functools.cache
def _trial_grids(lower_bound, upper_bound, n_trials, xp):
    """sGCV's fixed grids in ``xp``, built once: 0 and the positive magnitudes
    (log-spaced in ``[lower_bound, upper_bound]``), and the exponents 1 ... 0
    that space the negative ones."""
    positive = torch.logspace(
        math.log10(lower_bound), math.log10(upper_bound), n_trials, dtype=_DTYPE
    )
    fractions = torch.linspace(1.0, 0.0, n_trials, dtype=_DTYPE)
    # Python floats: the same values in either namespace.
    positive = xp.asarray([0.0, *positive.tolist()], dtype=xp.float64)
    return positive, xp.asarray(fractions.tolist(), dtype=xp.float64)


def _sum_symmetric(rows, gram, *tensors):
    """Sum a symmetric Gram (sent as its upper triangle: half the bytes of the
    all-reduce that dominates a data-parallel step) and other tensors over the
    processes."""
    upper = torch.triu_indices(*gram.shape, device=gram.device)
    packed, *tensors = rows.sum(gram[upper[0], upper[1]], *tensors)
    gram = gram.new_zeros(gram.shape)
    gram[upper[0], upper[1]] = packed
    return (gram + gram.triu(1).T, *tensors)


@dataclass(frozen=True)
class _Batch:
    """One scaled batch, reduced to what the update and sGCV need."""

    ZtR0: Tensor  # (p, c), Z^T (Z W_{k-1} - C)
    R0_norm2: Tensor  # (), ||Z W_{k-1} - C||_F^2
    n_samples: float  # sum of the weights: the rows the batch stands for
    n_targets: int  # c
    gram: Tensor  # (p, p), this batch's Z^T Z
    memory: Tensor  # (p, p), the memory Gram with this batch
    V: Tensor = None  # (p, p), eigenvectors of the memory Gram (if decomposed)
    eigvals: Tensor = None  # (p,), its eigenvalues, clipped at 0
