"""slimTrain's mini-batch step in numpy, for the MLPs sk_slim builds, on the CPU.

The same iteration as ``slimtrain_steps._hand_written_step`` and the torch
optimizer's step: forward pass, slimTik update of the head, the loss's
cotangent pulled back through the cached activations, then one Adam (or SGD
with Nesterov momentum) step on the extractor's parameters. At a mini-batch's
sizes (200 rows, width 16 to 64) a torch operation's dispatch costs several
times a numpy one's and the step is some sixty of them, so on the CPU the epoch
runs here, on numpy views that share the parameters' and the optimizer state's
memory: the torch objects stay the state (snapshots, ``partial_fit``, pickles).

References
----------
Newman, Chung, Chung, Ruthotto (2022), "slimTrain - A Stochastic Approximation
Method for Training Separable Deep Neural Networks", SIAM J. Sci. Comput. 44(4),
A2322-A2348 (Algorithm 1).
Kingma, Ba (2015), "Adam: A Method for Stochastic Optimization", ICLR (Algorithm
1; the moments, bias corrections and L2 penalty as ``torch.optim.Adam``'s).
"""

import math
from collections import deque

import numpy as np
import torch
from scipy.special import expit
from torch import nn

from .linearization import hand_written

__all__ = ["NumpyStep"]

_ACTIVATIONS = (nn.Tanh, nn.Sigmoid, nn.ReLU, nn.Identity)
# Options the numpy updates implement (absent keys: torch's defaults).
_ADAM_DEFAULTS = {"amsgrad": False, "maximize": False, "decoupled_weight_decay": False}
_SGD_DEFAULTS = {"dampening": 0, "maximize": False, "nesterov": True}


class NumpyStep:
    """The slimTrain step on numpy views of a network and its optimizer.

    Build one per epoch (:meth:`supports` first): the views are of the tensors
    the network and the optimizer hold when it is built.

    Parameters
    ----------
    net : SeparableNet
        A network whose extractor :meth:`supports` accepts.
    optimizer : torch.optim.Adam or torch.optim.SGD
        The optimizer of the extractor's parameters.
    slimtik : SlimTik
        The head's slimTik, on the CPU.
    """

    def __init__(self, net, optimizer, slimtik):
        self.net = net
        self.optimizer = optimizer
        self.slimtik = slimtik
        self._layers = []  # (W, b, activation) per Linear, as numpy views
        for layer in net.feature_extractor:
            if isinstance(layer, nn.Linear):
                weight, bias = layer.weight.detach(), layer.bias.detach()
                self._layers.append([weight.numpy(), bias.numpy(), nn.Identity])
            else:
                self._layers[-1][2] = type(layer)
        # Linear and activation layers only: the parameters are (W, b) per layer.
        self._tensors = list(net.feature_extractor.parameters())
        self._params = [view for W, b, _ in self._layers for view in (W, b)]
        self._updates = None  # bound once the optimizer has its state
        # slimTik updates numpy batches on a numpy state: views of its tensors.
        state = slimtik.state
        state.W = state.W.numpy()
        state.grams = deque((g.numpy() for g in state.grams), maxlen=state.grams.maxlen)

    def views(self, X, C, sample_weight, order):
        """Numpy views of an epoch's data and row order (no copies).

        Parameters
        ----------
        X : Tensor of shape (n, d)
            Inputs.
        C : Tensor of shape (n, c)
            Targets.
        sample_weight : Tensor of shape (n,) or None
            Weights of the rows.
        order : Tensor of shape (n,)
            The epoch's row order.

        Returns
        -------
        tuple of ndarray (or None for no weights)
            ``X, C, sample_weight, order``.
        """
        weight = None if sample_weight is None else sample_weight.numpy()
        return X.numpy(), C.numpy(), weight, order.numpy()

    @staticmethod
    def supports(net, optimizer, X, *, rows, derivatives, mgrit_iterations):
        """Whether an epoch of this fit can run in numpy.

        Parameters
        ----------
        net : SeparableNet
            The network.
        optimizer : torch.optim.Optimizer
            The extractor's optimizer.
        X : Tensor
            The training inputs.
        rows : RowGroup
            Where the rows are; split rows stay in torch (their all-reduces).
        derivatives : DerivativeData or None
            Derivative rows stay in torch.
        mgrit_iterations : int or None
            MGRIT propagation stays in torch.

        Returns
        -------
        bool
            True for a CPU, float32/float64 ``make_mlp`` extractor (``Linear``
            and activation layers only) with the hand-written maps enabled,
            local rows, no derivative data, no MGRIT, and an Adam or Nesterov
            SGD optimizer as slimTrain builds it.
        """
        if rows.distributed or derivatives is not None or mgrit_iterations:
            return False
        extractor = net.feature_extractor
        if not hand_written(extractor) or X.device.type != "cpu":
            return False
        layers = list(extractor)
        if not all(isinstance(layer, (nn.Linear, *_ACTIVATIONS)) for layer in layers):
            return False
        params = list(extractor.parameters())
        dtypes = {p.dtype for p in params} | {X.dtype, net.W.dtype}
        if len(dtypes) != 1 or dtypes.pop() not in (torch.float32, torch.float64):
            return False
        if any(p.device.type != "cpu" for p in params):
            return False
        return _optimizer_supported(optimizer, params)

    # Non-finite values pass silently, as in torch: the epoch loop undoes an epoch
    # whose loss or parameters are not finite, and numpy's warnings would only
    # reach the user.
    @np.errstate(all="ignore")
    def step(self, X, C, sample_weight=None):
        """One slimTrain iteration on a mini-batch of numpy arrays.

        Parameters
        ----------
        X : ndarray of shape (n, d)
            The batch's inputs, of the network's dtype.
        C : ndarray of shape (n, c)
            The batch's targets.
        sample_weight : ndarray of shape (n,), default=None
            Weights of the batch's rows.

        Returns
        -------
        loss : float
            The batch loss with the updated head, as ``half_mse``'s.
        """
        inputs, slopes, x = [], [], X
        for W, b, activation in self._layers:
            inputs.append(x)
            a = x @ W.T
            a += b
            x, slope = _activate(activation, a)
            slopes.append(slope)
        n, m = x.shape
        Z = np.empty((n, m + 1), dtype=x.dtype)
        Z[:, :m] = x
        Z[:, m] = 1.0
        head = self.slimtik.update(Z, C, sample_weight)  # (m + 1, c), float64
        head = head.astype(x.dtype, copy=False)
        R = Z @ head - C  # (n, c)
        n_samples = self.slimtik.batch_samples
        scale = 1.0 / (R.shape[1] * n_samples)
        squared = np.einsum("ij,ij->i", R, R) / R.shape[1]
        if sample_weight is None:
            dR = R * scale
            loss = 0.5 * squared.sum() / n_samples
        else:
            dR = R * (sample_weight * scale)[:, None]
            loss = 0.5 * (sample_weight * squared).sum() / n_samples
        M = dR @ head[:m].T  # d loss / d features
        gradients = [None] * (2 * len(self._layers))
        for index in range(len(self._layers) - 1, -1, -1):
            if slopes[index] is not None:
                M = M * slopes[index]
            gradients[2 * index] = M.T @ inputs[index]
            gradients[2 * index + 1] = M.sum(axis=0)
            if index:
                M = M @ self._layers[index][0]
        self._optimizer_step(gradients)
        return float(loss)

    def finish(self):
        """Give slimTik's state back as tensors, and its head to the network.

        The head is copied into the network's buffers, as every torch step does.
        """
        state = self.slimtik.state
        state.W = torch.from_numpy(state.W)
        grams = (torch.from_numpy(g) for g in state.grams)
        state.grams = deque(grams, maxlen=state.grams.maxlen)
        self.net.set_head(state.W)

    def _optimizer_step(self, gradients):
        """The optimizer's step with these gradients; torch's own on its first
        step, which creates its state."""
        if self._updates is None:
            optimizer = self.optimizer
            if any(not optimizer.state.get(p) for p in self._tensors):
                for p, g in zip(self._tensors, gradients, strict=True):
                    p.grad = torch.from_numpy(g)
                optimizer.step()
                for p in self._tensors:
                    p.grad = None
                return
            self._updates = self._bind_updates()
        for update, index, *views in self._updates:
            update(*views, gradients[index])

    def _bind_updates(self):
        """Per parameter: its update, its gradient's index, its group's options
        and numpy views of it and of its optimizer state."""
        optimizer = self.optimizer
        index = {id(p): i for i, p in enumerate(self._tensors)}
        adam = isinstance(optimizer, torch.optim.Adam)
        updates = []
        for group in optimizer.param_groups:
            for p in group["params"]:
                state = optimizer.state[p]
                i = index[id(p)]
                if adam:
                    moments = state["exp_avg"].numpy(), state["exp_avg_sq"].numpy()
                    views = (group, state["step"].numpy(), *moments)
                    updates.append((_adam_update, i, *views, self._params[i]))
                else:
                    buffer = state["momentum_buffer"].numpy()
                    updates.append((_sgd_update, i, group, buffer, self._params[i]))
        return updates


def _activate(activation, a):
    """``sigma(a)`` in place of ``a``, and its slope (None for the identity)."""
    if activation is nn.Tanh:
        s = np.tanh(a, out=a)
        return s, 1.0 - s * s
    if activation is nn.Sigmoid:
        s = expit(a, out=a)
        return s, s * (1.0 - s)
    if activation is nn.ReLU:
        slope = (a > 0).astype(a.dtype)
        return np.maximum(a, 0.0, out=a), slope
    return a, None


def _adam_update(group, step, exp_avg, exp_avg_sq, param, grad):
    """``torch.optim.Adam``'s update of one parameter, in place on numpy views
    of it, its step count and its moments."""
    beta1, beta2 = group["betas"]
    if group["weight_decay"]:
        grad = grad + group["weight_decay"] * param
    step += 1  # the torch state's count, through its view
    t = float(step)
    exp_avg += (1.0 - beta1) * (grad - exp_avg)
    exp_avg_sq *= beta2
    exp_avg_sq += (1.0 - beta2) * grad * grad
    denominator = np.sqrt(exp_avg_sq)
    denominator *= 1.0 / math.sqrt(1.0 - beta2**t)
    denominator += group["eps"]
    param -= (group["lr"] / (1.0 - beta1**t)) * exp_avg / denominator


def _sgd_update(group, buffer, param, grad):
    """``torch.optim.SGD``'s Nesterov update of one parameter, in place."""
    if group["weight_decay"]:
        grad = grad + group["weight_decay"] * param
    momentum = group["momentum"]
    buffer *= momentum
    buffer += grad
    param -= group["lr"] * (grad + momentum * buffer)


def _optimizer_supported(optimizer, params):
    """Adam without AMSGrad, or Nesterov SGD, over exactly ``params``."""
    if type(optimizer) is torch.optim.Adam:
        defaults = _ADAM_DEFAULTS
    elif type(optimizer) is torch.optim.SGD:
        defaults = _SGD_DEFAULTS
    else:
        return False
    held = [p for group in optimizer.param_groups for p in group["params"]]
    if {id(p) for p in held} != {id(p) for p in params} or len(held) != len(params):
        return False
    return all(
        group.get(key, value) == value
        for group in optimizer.param_groups
        for key, value in defaults.items()
    )
