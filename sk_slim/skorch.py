"""A slimTik-solved last layer for any skorch net (the slimTrain step).

:class:`SlimTrainNet` and :class:`SlimTrainNetRegressor` are skorch nets whose
training step is the slimTrain step: the module's head (its final ``nn.Linear``)
is taken out of the optimizer's hands and solved per mini-batch by sampled
limited-memory Tikhonov regularization (:class:`~sk_slim.linalg.SlimTik`, with
sampled GCV), then skorch's own optimizer steps every other parameter on the
loss with the new head. Everything else is skorch: callbacks, history, device,
``warm_start``, ``set_params`` with ``module__``/``optimizer__`` prefixes,
pickling.

Needs the optional dependency: ``pip install "sk_slim[skorch]"``.
"""

from contextlib import contextmanager
from numbers import Real

import torch
from torch import nn

try:
    from skorch import NeuralNet, NeuralNetRegressor
    from skorch.callbacks import PassthroughScoring
    from skorch.dataset import unpack_data
    from skorch.utils import to_tensor
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sk_slim.skorch needs skorch; install it with: pip install 'sk_slim[skorch]'"
    ) from exc

from .training import make_slimtik

__all__ = ["SlimTrainNet", "SlimTrainNetRegressor"]


class SlimTrainNet(NeuralNet):
    """A skorch ``NeuralNet`` whose last linear layer is solved by slimTik.

    Per training batch, in one forward pass: the features ``Z`` entering the
    head are taken as they arrive, the head ``(W, b)`` takes one slimTik step on
    ``([Z, 1], y)`` under ``torch.no_grad()`` (a recursive ridge update whose
    curvature comes from the last ``memory_depth + 1`` batches, with its
    regularization chosen by sampled GCV), the rest of the forward pass runs
    with the new head, and skorch's criterion, backward pass and optimizer step
    update every other parameter. Validation and prediction use the current
    head unchanged.

    The head solves a least-squares problem, so the criterion should be a
    squared error (the default ``MSELoss``), and the module's output must be the
    head's output, at most reshaped to the targets' shape (checked every batch).

    Parameters
    ----------
    module : torch module (class or instance)
        As in skorch. It must apply its head exactly once per forward pass.
    *args
        Positional arguments of skorch after ``module`` (rarely used).
    criterion : torch criterion (class), default=torch.nn.MSELoss
        The loss of the other parameters; a squared error, as the head's.
    head : str, default=None
        Name of the ``nn.Linear`` to solve, as in ``module.get_submodule``;
        ``None`` takes the last ``nn.Linear`` in ``module.modules()`` order
        (registration order: name it when the forward pass orders them
        differently).
    memory_depth : int or None, default=5
        Number ``r`` of previous batches whose features slimTik remembers beside
        the current one; ``None`` keeps all (exact recursive ridge regression).
    head_alpha : 'auto' or float, default='auto'
        The head's regularization increment per batch, on the mean-loss scale:
        ``'auto'`` chooses it by sampled GCV, a float ``>= 0`` fixes it (the
        running sum after ``k`` batches is ``1e-3 + k * head_alpha``).
    sgcv_every : int, default=1
        With ``head_alpha='auto'``, sampled GCV chooses on the first batch and
        on every ``sgcv_every``-th; the batches between keep the running
        regularization and skip the eigendecomposition (1: every batch, as
        published; :class:`~sk_slim.linalg.SlimTik`). ``SlimTrainRegressor``
        chooses on every 8th batch, at least once an epoch.
    **kwargs
        Every other ``NeuralNet`` parameter (``optimizer``, ``lr``,
        ``max_epochs``, ``batch_size``, ``train_split``, ``callbacks``,
        ``device``, ``warm_start``, ``module__*``, ``optimizer__*``, ...).

    Attributes
    ----------
    slimtik_ : SlimTik
        The head's solver state (Gram memory, running regularization, head in
        float64). Built with the optimizer, so it starts afresh exactly when
        skorch starts the optimizer afresh (``fit`` without ``warm_start``, or a
        new module or criterion); kept by ``warm_start``, ``partial_fit`` and
        pickling. ``memory_depth``, ``head_alpha`` and ``sgcv_every`` take
        effect when it is built.
    optimizer_ : torch optimizer
        skorch's optimizer over every learnable parameter except the head's.
    history_ : History
        skorch's history; each training batch also records ``head_lambda``
        (the regularization increment ``lambda_k`` chosen for it) and
        ``head_alpha`` (slimTik's effective ridge weight ``Lambda_k / (k + 1)``),
        and each epoch the batch-size weighted mean of ``head_alpha``.

    See Also
    --------
    SlimTrainNetRegressor : The same with skorch's regressor interface.
    sk_slim.SlimTrainRegressor : The slimTrain estimator as a plain scikit-learn
        estimator.

    Notes
    -----
    The features are captured by a forward pre-hook on the head, installed for
    the duration of each training step only, which also writes the new head
    before the head runs. So the user's module is used as it is (no need to
    split it into an extractor and a head), the forward pass is not repeated,
    the loss is computed on the same graph with the new head, as in
    slimTrain's iteration (Newman et al. 2022), and no hook is left on the
    module to be pickled. With an optimizer that evaluates its closure several
    times per step (LBFGS), only the first evaluation updates the head.

    The head's parameters get ``requires_grad=False``. The module's head is the
    source of truth: if it was changed outside training (``load_params``, a
    ``Checkpoint`` being loaded), the next update starts from it, with the
    remembered features and regularization of ``slimtik_``. A ``Checkpoint``
    with ``f_pickle`` keeps ``slimtik_`` itself.

    References
    ----------
    Newman, Chung, Chung, Ruthotto (2022), "slimTrain - A Stochastic
    Approximation Method for Training Separable Deep Neural Networks",
    SIAM J. Sci. Comput. 44(4), A2322-A2348.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from torch import nn
    >>> from sk_slim.skorch import SlimTrainNet
    >>> X = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    >>> y = np.sin(X[:, :2])
    >>> module = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))
    >>> net = SlimTrainNet(module, optimizer=torch.optim.Adam, max_epochs=2,
    ...                    batch_size=16, train_split=None, verbose=0).fit(X, y)
    >>> net.predict(X).shape
    (64, 2)
    >>> len(net.history[-1, "batches"]), net.slimtik_.state.n_updates
    (4, 8)
    """

    # skorch maps these to the CPU when a CUDA-trained net is unpickled without
    # CUDA; slimtik_ holds tensors on the training device.
    cuda_dependent_attributes_ = [*NeuralNet.cuda_dependent_attributes_, "slimtik_"]

    def __init__(
        self,
        module,
        *args,
        criterion=torch.nn.MSELoss,
        head=None,
        memory_depth=5,
        head_alpha="auto",
        sgcv_every=1,
        **kwargs,
    ):
        super().__init__(module, *args, criterion=criterion, **kwargs)
        self.head = head
        self.memory_depth = memory_depth
        self.head_alpha = head_alpha
        self.sgcv_every = sgcv_every

    def get_default_callbacks(self):
        """Return skorch's default callbacks, plus the epoch mean of ``head_alpha``.

        Returns
        -------
        callbacks : list of (str, Callback)
            The defaults of skorch and a ``PassthroughScoring`` of ``head_alpha``.
        """
        head_alpha = PassthroughScoring(
            "head_alpha", lower_is_better=None, on_train=True
        )
        return [*super().get_default_callbacks(), ("head_alpha", head_alpha)]

    def initialize_optimizer(self):
        """Build the optimizer over all parameters but the head's, and slimTik.

        skorch's ``optimizer__param_groups`` patterns and ``lr`` apply as usual
        to the remaining parameters. Resetting the optimizer resets the head's
        solver too: slimTik's memory is the head's optimizer state.

        Returns
        -------
        self : SlimTrainNet
            The net, with ``optimizer_`` and a fresh ``slimtik_``.
        """
        head = self._head_layer()
        head.requires_grad_(False)  # slimTik owns it: no gradient needed
        head_ids = {id(p) for p in head.parameters()}
        named_parameters = [
            (name, p)
            for name, p in self.get_all_learnable_params()
            if id(p) not in head_ids
        ]
        if not named_parameters:
            raise ValueError(
                "SlimTrainNet needs learnable parameters besides the head's; for a "
                "linear model use sk_slim.linalg.SlimTik or sklearn's Ridge."
            )
        args, kwargs = self.get_params_for_optimizer("optimizer", named_parameters)
        self.optimizer_ = self.optimizer(*args, **kwargs)
        self.slimtik_ = self._new_slimtik(head)
        return self

    def train_step(self, batch, **fit_params):
        """One slimTrain step: slimTik on the head, then skorch's step on the rest.

        Parameters
        ----------
        batch : tuple
            One batch ``(X, y)`` from the training iterator.
        **fit_params : dict
            Passed to skorch's ``train_step`` (and the module's ``forward``).

        Returns
        -------
        step : dict
            ``{'loss': loss, 'y_pred': y_pred}``, as skorch's ``train_step``;
            both computed with the updated head.
        """
        _, y = unpack_data(batch)
        if y is None:
            raise ValueError("SlimTrainNet solves its head from targets; y is None.")
        solve = _HeadSolve(self._head_layer(), self.slimtik_, y)
        with solve.installed():
            step = super().train_step(batch, **fit_params)
        solve.check_output(step["y_pred"])
        state = self.slimtik_.state
        self.history.record_batch("head_lambda", state.lam)
        self.history.record_batch("head_alpha", state.alpha)
        return step

    def _head_layer(self):
        """The ``nn.Linear`` named by ``head`` (default: the last one)."""
        if self.head is None:
            linears = [m for m in self.module_.modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise ValueError("The module has no nn.Linear layer to solve.")
            return linears[-1]
        layer = self.module_.get_submodule(self.head)
        if not isinstance(layer, nn.Linear):
            raise TypeError(
                f"head={self.head!r} is a {type(layer).__name__}, not an nn.Linear."
            )
        return layer

    def _new_slimtik(self, head):
        alpha = self.head_alpha
        is_real = isinstance(alpha, Real) and not isinstance(alpha, bool)
        if alpha != "auto" and not (is_real and alpha >= 0):
            raise ValueError(
                f"head_alpha must be 'auto' or a float >= 0, got {alpha!r}."
            )
        W0 = _augmented_head(head)  # (p, c)
        return make_slimtik(
            W0,
            memory_depth=self.memory_depth,
            head_alpha=alpha,
            sgcv_every=self.sgcv_every,
        )


class SlimTrainNetRegressor(SlimTrainNet, NeuralNetRegressor):
    """A skorch ``NeuralNetRegressor`` whose last linear layer is solved by slimTik.

    :class:`SlimTrainNet` with skorch's regressor interface: ``score`` is the
    R^2 of ``predict``, and ``y`` is required by ``fit``.

    Parameters
    ----------
    module : torch module (class or instance)
        As in skorch. Its output must be its head's output, at most reshaped.
    *args
        Positional arguments of skorch after ``module`` (rarely used).
    criterion : torch criterion (class), default=torch.nn.MSELoss
        The loss of the other parameters.
    head : str, default=None
        Name of the ``nn.Linear`` to solve; ``None`` takes the last one.
    memory_depth : int or None, default=5
        Previous batches slimTik remembers; ``None`` keeps all.
    head_alpha : 'auto' or float, default='auto'
        Per-batch regularization increment: sampled GCV, or a float ``>= 0``.
    sgcv_every : int, default=1
        Sampled GCV on every ``sgcv_every``-th batch (see :class:`SlimTrainNet`).
    **kwargs
        Every other ``NeuralNetRegressor`` parameter.

    Attributes
    ----------
    slimtik_ : SlimTik
        The head's solver state (see :class:`SlimTrainNet`).
    optimizer_ : torch optimizer
        skorch's optimizer over every learnable parameter except the head's.
    history_ : History
        skorch's history, with ``head_lambda`` and ``head_alpha`` per batch.

    Examples
    --------
    >>> import numpy as np
    >>> import torch
    >>> from torch import nn
    >>> from sk_slim.skorch import SlimTrainNetRegressor
    >>> X = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    >>> y = np.sin(X[:, :1])
    >>> module = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    >>> net = SlimTrainNetRegressor(module, optimizer=torch.optim.Adam,
    ...                             max_epochs=2, verbose=0).fit(X, y)
    >>> net.predict(X).shape
    (64, 1)
    """


def _augmented_head(head):
    """The head of ``nn.Linear`` ``head`` as one float64 matrix ``[W; b]``, (p, c)."""
    W = head.weight.detach().T  # (m, c)
    if head.bias is not None:
        W = torch.cat([W, head.bias.detach()[None, :]])  # (m + 1, c)
    return W.to(torch.float64)


class _HeadSolve:
    """A training step's head update, run by a pre-forward hook on the head.

    The hook sees the features as the head receives them, updates slimTik on
    them and the batch targets, and writes the new head before the head runs:
    the first time only, so closure re-evaluations (LBFGS) keep the head fixed.
    """

    def __init__(self, head, slimtik, y):
        self.head, self.slimtik, self.y = head, slimtik, y
        self.head_output = None

    @contextmanager
    def installed(self):
        handles = [
            self.head.register_forward_pre_hook(self._update),
            self.head.register_forward_hook(self._record),
        ]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def _update(self, head, args):
        if self.head_output is not None:
            return
        Z = args[0].detach().reshape(-1, head.in_features)  # (n, m)
        if head.bias is not None:
            Z = torch.cat([Z, Z.new_ones(len(Z), 1)], dim=1)  # (n, m + 1)
        C = to_tensor(self.y, device=Z.device)
        if C.numel() != len(Z) * head.out_features:
            raise ValueError(
                f"The targets have {C.numel()} values for {len(Z)} head input rows "
                f"of {head.out_features} outputs each: the module's output must be "
                "its head's output, at most reshaped to the targets' shape."
            )
        C = C.reshape(len(Z), head.out_features)  # (n, c)
        slimtik = self.slimtik
        if slimtik.W.device != Z.device:  # e.g. unpickled on CPU, or moved
            slimtik.state = slimtik.state.to(Z.device)
        with torch.no_grad():
            current = _augmented_head(head)  # (p, c)
            # The module's head is the source of truth; keep slimTik's float64
            # copy unless the head was changed since the last update (load_params).
            if not torch.equal(current, slimtik.W.to(head.weight.dtype).double()):
                slimtik.state.W = current
            W = slimtik.update(Z, C)  # (p, c), float64
            head.weight.copy_(W[: head.in_features].T)
            if head.bias is not None:
                head.bias.copy_(W[head.in_features])

    def _record(self, head, args, output):
        if self.head_output is None:
            self.head_output = output.detach()

    def check_output(self, y_pred):
        """Raise unless the module returned the head's output, at most reshaped."""
        if self.head_output is None:
            raise ValueError("The head was not applied in the training forward pass.")
        if isinstance(y_pred, tuple | list):
            y_pred = y_pred[0]
        if not torch.equal(y_pred.detach().reshape(-1), self.head_output.reshape(-1)):
            raise ValueError(
                "The module's output is not its head's output (at most reshaped): "
                "a layer after the head breaks slimTik's least-squares solve. "
                "Name the last layer with head=..., or move the other layer before it."
            )
