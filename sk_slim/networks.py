"""Separable networks ``f(x) = phi(x; theta) W + b`` and their feature extractors.

The head ``(W, b)`` lives in buffers, not parameters: it is solved by linear
algebra (slimTik, Tikhonov), so no optimizer may ever step it. Builders take a
``torch.Generator`` so that initialization never touches the global RNG.
"""

import copy
import math

import torch
from torch import nn

__all__ = [
    "ACTIVATIONS",
    "ExportedNet",
    "ResidualBlock",
    "SeparableNet",
    "box_init_",
    "export_network",
    "make_mlp",
    "make_resnet",
]

ACTIVATIONS = {
    "identity": nn.Identity,
    "logistic": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
}

# Draws of a box-initialized hyperplane before a unit dead on the data is kept.
_BOX_TRIES = 20
# Rows per block where a box initialization reads the data (never all at once).
_BOX_ROWS = 4096
# Approximate range of each activation over a box-initialized layer: the box that
# the next layer's inputs live in (ReLU and logistic peak at <= 1 by construction).
_OUTPUT_BOX = {
    "identity": (-1.0, 1.0),
    "logistic": (0.0, 1.0),
    "tanh": (-1.0, 1.0),
    "relu": (0.0, 1.0),
}


class SeparableNet(nn.Module):
    """A feature extractor followed by an affine head held in buffers.

    Parameters
    ----------
    feature_extractor : nn.Module
        Maps inputs (n, ...) to features ``Z`` of shape (n, n_features).
    n_features : int
        Number of features ``m`` the extractor returns.
    n_outputs : int
        Number of outputs ``c``.

    Attributes
    ----------
    W : Tensor of shape (n_features, n_outputs)
        Head weights (a buffer: saved, moved and cast with the module, never
        seen by an optimizer).
    b : Tensor of shape (n_outputs,)
        Head bias (a buffer).
    """

    def __init__(self, feature_extractor, n_features, n_outputs):
        super().__init__()
        self.feature_extractor = feature_extractor
        like = next(feature_extractor.parameters(), None)
        factory = (
            {"dtype": like.dtype, "device": like.device} if like is not None else {}
        )
        self.register_buffer("W", torch.zeros(n_features, n_outputs, **factory))
        self.register_buffer("b", torch.zeros(n_outputs, **factory))

    def features(self, x):
        """Learned features ``Z = phi(x; theta)``.

        Parameters
        ----------
        x : Tensor of shape (n, ...)
            Inputs.

        Returns
        -------
        Z : Tensor of shape (n, n_features)
            The extractor's output.
        """
        return self.feature_extractor(x)

    def head(self, Z):
        """Apply the affine head ``Z W + b``.

        Parameters
        ----------
        Z : Tensor of shape (n, n_features)
            Features.

        Returns
        -------
        Tensor of shape (n, n_outputs)
            The head's output.
        """
        return torch.addmm(self.b, Z, self.W)

    def forward(self, x):
        """Network output ``phi(x) W + b``.

        Parameters
        ----------
        x : Tensor of shape (n, ...)
            Inputs.

        Returns
        -------
        Tensor of shape (n, n_outputs)
            The network's output.
        """
        return self.head(self.features(x))

    @staticmethod
    def augment(Z):
        """Append a column of ones, so that an augmented head ``[W; b]`` fits ``b``.

        Parameters
        ----------
        Z : Tensor of shape (n, m)
            Features.

        Returns
        -------
        Tensor of shape (n, m + 1)
            ``[Z, 1]``.
        """
        return torch.cat([Z, Z.new_ones(Z.shape[0], 1)], dim=1)

    @property
    def augmented_head(self):
        """The head as one matrix ``[W; b]`` of shape (n_features + 1, n_outputs)."""
        return torch.cat([self.W, self.b[None]], dim=0)

    @torch.no_grad()
    def set_head(self, W_augmented):
        """Copy a solved augmented head ``[W; b]`` (m + 1, c) into the buffers.

        The solve may run in another dtype (float64 head algebra); the buffers
        keep theirs.

        Parameters
        ----------
        W_augmented : Tensor of shape (n_features + 1, n_outputs)
            The head ``W`` with the bias ``b`` as its last row.
        """
        W_augmented = W_augmented.reshape(self.W.shape[0] + 1, -1)
        self.W.copy_(W_augmented[:-1])
        self.b.copy_(W_augmented[-1])


class ExportedNet(nn.Module):
    """A fitted separable network as a plain module: raw inputs to predictions.

    Parameters
    ----------
    feature_extractor : nn.Module
        Maps inputs (n, ...) to features (n, m).
    head : nn.Linear
        The affine head, with the estimator's output transform folded in.
    squeeze : bool
        Return shape (n,) (a single output) instead of (n, 1).
    inputs : nn.Module, default=None
        Applied first: the estimator's input encoding.
    """

    def __init__(self, feature_extractor, head, squeeze, inputs=None):
        super().__init__()
        self.inputs = nn.Identity() if inputs is None else inputs
        self.feature_extractor = feature_extractor
        self.head = head
        self.squeeze = squeeze

    def forward(self, x):
        """Compute the predictions.

        Parameters
        ----------
        x : Tensor of shape (n, ...)
            Raw inputs.

        Returns
        -------
        Tensor of shape (n, c) or (n,)
            ``head(feature_extractor(inputs(x)))``.
        """
        out = self.head(self.feature_extractor(self.inputs(x)))
        return out[:, 0] if self.squeeze else out


@torch.no_grad()
def export_network(net, scale, shift, *, squeeze=False, inputs=None):
    """Copy ``net`` into an :class:`ExportedNet` computing ``net(x) * scale + shift``.

    Parameters
    ----------
    net : SeparableNet
        The fitted network; left unchanged.
    scale, shift : Tensor of shape (c,)
        The output transform folded into the head (e.g. the targets' scale and
        mean, or an inverse temperature and zeros).
    squeeze : bool, default=False
        Return shape (n,) for a single output.
    inputs : nn.Module, default=None
        Applied to the inputs first (copied): the estimator's input encoding.

    Returns
    -------
    ExportedNet
        In eval mode, on the CPU, in ``net``'s dtype, with its own parameters.
    """
    extractor = copy.deepcopy(net.feature_extractor).cpu().eval()
    dtype = net.W.dtype
    scale = scale.to(torch.float64).cpu()
    W = net.W.detach().cpu().double() * scale  # (m, c)
    b = net.b.detach().cpu().double() * scale + shift.to(torch.float64).cpu()
    head = nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
    head.weight.copy_(W.T)
    head.bias.copy_(b)
    inputs = None if inputs is None else copy.deepcopy(inputs).cpu().to(dtype)
    return ExportedNet(extractor, head.eval(), squeeze, inputs).eval()


class ResidualBlock(nn.Module):
    """One forward-Euler step ``x + step * sigma(x K^T + beta)`` of a ResNet ODE.

    Parameters
    ----------
    width : int
        Number of channels (input and output).
    step : float
        Step size ``h`` (the final time divided by the depth).
    activation : {'identity', 'logistic', 'tanh', 'relu'}
        The nonlinearity ``sigma``.
    antisymmetric : bool, default=False
        Use ``K - K^T`` as the weight, whose purely imaginary spectrum keeps the
        forward propagation stable (Haber and Ruthotto, 2017).
    """

    def __init__(self, width, step, activation, *, antisymmetric=False):
        super().__init__()
        self.linear = _uninitialized_linear(width, width)
        self.step = step
        self.activation = _activation(activation)
        self.antisymmetric = antisymmetric

    def forward(self, x):
        """Advance ``x`` by one step.

        Parameters
        ----------
        x : Tensor of shape (n, width)
            The state before the step.

        Returns
        -------
        Tensor of shape (n, width)
            The state after the step.
        """
        K = self.linear.weight
        if self.antisymmetric:
            K = K - K.T
        return x + self.step * self.activation(
            nn.functional.linear(x, K, self.linear.bias)
        )


def make_mlp(
    n_in,
    hidden_layer_sizes=(64, 64),
    activation="tanh",
    *,
    init="glorot",
    input_box=(0.0, 1.0),
    data=None,
    generator=None,
    dtype=None,
    device=None,
):
    """Build a fully connected feature extractor (no output layer).

    Parameters
    ----------
    n_in : int
        Number of input features.
    hidden_layer_sizes : sequence of int, default=(64, 64)
        Widths of the hidden layers; the last one is the number of features.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='tanh'
        Nonlinearity after every layer (names as in ``MLPRegressor``).
    init : {'glorot', 'box'}, default='glorot'
        ``'glorot'``: uniform Glorot init as in scikit-learn's MLP. ``'box'``:
        the box initialization of Cyr et al. (see :func:`box_init_`), for every
        activation: each unit's transition (ReLU's kink, the steep part of tanh
        and logistic) is put through the box its inputs occupy.
    input_box : tuple of (float or Tensor of shape (n_in,)), default=(0.0, 1.0)
        Range ``(low, high)`` of the input features (per feature as tensors);
        used by ``init='box'`` without ``data``.
    data : Tensor of shape (n, n_in), default=None
        Training inputs, for ``init='box'``: every layer's box is then the
        bounding box of its inputs on these rows (the first layer's: of
        ``data``), and a hyperplane that misses them all is drawn again.
    generator : torch.Generator, default=None
        Source of randomness; if None, a generator seeded from system entropy.
        The global RNG is never used.
    dtype : torch.dtype, default=None
        Parameter dtype (torch's default dtype if None).
    device : torch.device, default=None
        Parameter device.

    Returns
    -------
    nn.Sequential
        ``Linear, activation, Linear, activation, ...``.
    """
    sizes = [n_in, *hidden_layer_sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(
            f"hidden_layer_sizes must be non-empty positive ints, got "
            f"{hidden_layer_sizes}."
        )
    generator = _generator(generator)
    layers, box = [], input_box
    inputs = None if data is None or init != "box" else _RowImages(data)
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        if inputs is not None:
            box = _bounding_box(inputs)
        linear = _linear(fan_in, fan_out, activation, init, box, generator, inputs)
        layers += [linear, _activation(activation)]
        box = _OUTPUT_BOX[activation]
        if inputs is not None:
            inputs.layers += layers[-2:]
    return nn.Sequential(*layers).to(
        dtype=dtype or torch.get_default_dtype(), device=device
    )


def make_resnet(
    n_in,
    width=16,
    depth=8,
    step=None,
    activation="tanh",
    *,
    antisymmetric=False,
    init="glorot",
    input_box=(0.0, 1.0),
    data=None,
    generator=None,
    dtype=None,
    device=None,
):
    """Build a residual feature extractor: an opening layer, then ``depth`` steps.

    ``x_0 = sigma(K_0 y + b_0)``, ``x_{l+1} = x_l + h sigma(K_l x_l + b_l)``: the
    forward-Euler view of a ResNet as an ODE used in the slimTrain and GNvpro
    papers.

    Parameters
    ----------
    n_in : int
        Number of input features.
    width : int, default=16
        Number of features (channels of every block).
    depth : int, default=8
        Number of residual blocks.
    step : float, default=None
        Step size ``h``; ``1 / depth`` (final time 1) if None.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='tanh'
        Nonlinearity ``sigma``.
    antisymmetric : bool, default=False
        Use antisymmetric block weights ``K - K^T`` (stable forward propagation).
    init : {'glorot', 'box'}, default='glorot'
        As in :func:`make_mlp`. For ``'box'`` each block's hyperplanes are drawn
        through the box its inputs occupy, and scaled so the block adds at most
        ``h`` times the box width (Cyr et al.; a reconstruction, see Notes).
    input_box : tuple of (float or Tensor of shape (n_in,)), default=(0.0, 1.0)
        Range of the input features; used by ``init='box'`` without ``data``.
    data : Tensor of shape (n, n_in), default=None
        Training inputs, for ``init='box'``: each layer's box is the bounding
        box of its inputs on these rows, as in :func:`make_mlp`.
    generator : torch.Generator, default=None
        Source of randomness; the global RNG is never used.
    dtype : torch.dtype, default=None
        Parameter dtype (torch's default dtype if None).
    device : torch.device, default=None
        Parameter device.

    Returns
    -------
    nn.Sequential
        The opening ``Linear`` and activation, then ``depth`` residual blocks.

    Notes
    -----
    The ResNet box rule is reconstructed, not taken from Cyr et al. (2020):
    with inputs in ``[lo, hi]^d``, a ReLU block adds at most ``h (hi - lo)``
    to every channel, so the box grows by ``(1 + h)`` per block
    and by at most ``e`` over a final time of 1.
    """
    if init == "box" and antisymmetric:
        raise ValueError("init='box' does not apply to antisymmetric weights.")
    step = 1.0 / depth if step is None else step
    generator = _generator(generator)
    inputs = None if data is None or init != "box" else _RowImages(data)
    box = input_box if inputs is None else _bounding_box(inputs)
    opening = _linear(n_in, width, activation, init, box, generator, inputs)
    layers = [opening, _activation(activation)]
    lo, hi = _OUTPUT_BOX[activation]
    if inputs is not None:
        inputs.layers += layers
    for _ in range(depth):
        block = ResidualBlock(width, step, activation, antisymmetric=antisymmetric)
        if init == "box":
            if inputs is not None:
                block = block.double()  # initialized and run on the float64 data
                lo, hi = _bounding_box(inputs)
            width_of_box = float((torch.as_tensor(hi) - torch.as_tensor(lo)).max())
            box_init_(
                block.linear,
                (lo, hi),
                generator=generator,
                scale=width_of_box,
                inputs=inputs,
            )
            if inputs is None:
                hi = hi + step * (hi - lo)
            else:
                inputs.layers.append(block)
        else:
            _glorot_(block.linear, activation, generator)
        layers.append(block)
    return nn.Sequential(*layers).to(
        dtype=dtype or torch.get_default_dtype(), device=device
    )


@torch.no_grad()
def box_init_(linear, box=(0.0, 1.0), *, generator=None, scale=1.0, inputs=None):
    """Box initialization (Cyr et al., 2020) of one linear layer, in place.

    Every neuron gets a hyperplane with a uniformly random normal ``nu`` through a
    uniformly random point ``q`` of the input box ``[lo, hi]``, scaled so that the
    pre-activation is 0 on the hyperplane and ``scale`` at the box corner farthest
    from it. A ReLU neuron is thus active on part of the box and never dead there.

    Parameters
    ----------
    linear : nn.Linear
        The layer; ``weight`` (out, d) and ``bias`` (out,) are overwritten.
    box : tuple of (float or Tensor of shape (d,)), default=(0.0, 1.0)
        ``(lo, hi)``: every input lies in ``[lo, hi]``, per feature when given
        as tensors (a feature with ``lo == hi`` is widened by 1 around it).
    generator : torch.Generator, default=None
        Source of randomness; the global RNG is never used.
    scale : float, default=1.0
        The largest pre-activation over the box.
    inputs : Tensor of shape (n, d), default=None
        The layer's inputs on the training data. A hyperplane that leaves all
        of them on its negative side (a ReLU dead on every row) is drawn
        again, up to 20 times.

    Returns
    -------
    nn.Linear
        The same layer.

    Notes
    -----
    ``nu ~ N(0, I)`` normalized, ``q ~ U[lo, hi]``, corner ``x*_j = hi_j`` if
    ``nu_j > 0`` else ``lo_j``; ``kappa = scale / (nu . (x* - q))``; weight
    ``kappa nu`` and bias ``-kappa nu . q``.

    The guarantee holds for inputs that fill the box, as a first layer's
    inputs do. A deeper layer's inputs are the image of the data, a
    low-dimensional subset of its box, so some of its hyperplanes can miss
    them: ``inputs`` redraws those.

    References
    ----------
    Cyr, Gulian, Patel, Perego, Trask (2020), "Robust training and
    initialization of deep neural networks: an adaptive basis viewpoint",
    MSML, PMLR 107.
    """
    n_out, d = linear.weight.shape
    lo, hi = (torch.as_tensor(bound, dtype=torch.float64) for bound in box)
    lo, hi = lo.expand(d), hi.expand(d)
    flat = hi <= lo
    lo, hi = torch.where(flat, lo - 0.5, lo), torch.where(flat, hi + 0.5, hi)
    generator = _generator(generator)
    weight = torch.empty(n_out, d, dtype=torch.float64)
    bias = torch.empty(n_out, dtype=torch.float64)
    redraw = torch.ones(n_out, dtype=torch.bool)
    for _ in range(_BOX_TRIES):
        m = int(redraw.sum())
        nu = torch.randn(m, d, generator=generator, dtype=torch.float64)
        nu = nu / torch.linalg.norm(nu, dim=1, keepdim=True)
        q = lo + (hi - lo) * torch.rand(m, d, generator=generator, dtype=torch.float64)
        corner = torch.where(nu > 0, hi, lo)
        kappa = scale / (nu * (corner - q)).sum(dim=1, keepdim=True)  # (m, 1)
        weight[redraw], bias[redraw] = kappa * nu, -(kappa * nu * q).sum(dim=1)
        if inputs is None:
            break
        redraw = torch.ones(n_out, dtype=torch.bool)
        for block in inputs.split(_BOX_ROWS):  # many rows: never all at once
            pre = block.to(torch.float64) @ weight.T + bias  # (rows, out)
            redraw &= (pre <= 0).all(dim=0)
        if not redraw.any():
            break
    linear.weight.copy_(weight)
    linear.bias.copy_(bias)
    return linear


def _linear(fan_in, fan_out, activation, init, box, generator, inputs=None):
    """A float64 CPU ``nn.Linear`` initialized from ``generator`` only."""
    linear = _uninitialized_linear(fan_in, fan_out, dtype=torch.float64)
    if init == "box":
        return box_init_(linear, box, generator=generator, inputs=inputs)
    if init == "glorot":
        return _glorot_(linear, activation, generator)
    raise ValueError(f"init must be 'glorot' or 'box', got {init!r}.")


def _uninitialized_linear(fan_in, fan_out, dtype=None):
    """A CPU ``nn.Linear`` whose weights its caller sets, no RNG touched.

    Built from empty parameters, as ``nn.utils.skip_init`` does, but not
    through the meta device, whose first use imports sympy (half a second of a
    new user's first fit).
    """
    linear = nn.Linear.__new__(nn.Linear)
    nn.Module.__init__(linear)
    linear.in_features, linear.out_features = fan_in, fan_out
    options = {"dtype": dtype, "device": "cpu"}
    linear.weight = nn.Parameter(torch.empty(fan_out, fan_in, **options))
    linear.bias = nn.Parameter(torch.empty(fan_out, **options))
    return linear


@torch.no_grad()
def _glorot_(linear, activation, generator):
    """Uniform Glorot init of weights and biases, as scikit-learn's MLP does."""
    fan_out, fan_in = linear.weight.shape
    factor = 2.0 if activation == "logistic" else 6.0
    bound = math.sqrt(factor / (fan_in + fan_out))
    nn.init.uniform_(linear.weight, -bound, bound, generator=generator)
    nn.init.uniform_(linear.bias, -bound, bound, generator=generator)
    return linear


class _RowImages:
    """The training rows' image under the layers built so far, for a data-driven
    box initialization: split as a tensor is, in blocks each computed again from
    the data, so that a layer's inputs on many rows are never held at once."""

    def __init__(self, data):
        self.data, self.layers = data.detach(), []

    @torch.no_grad()
    def split(self, rows):
        for block in self.data.split(rows):
            block = block.double().cpu()
            for layer in self.layers:
                block = layer(block)
            yield block


def _bounding_box(inputs):
    """Per-feature ``(min, max)`` of the rows of a tensor or :class:`_RowImages`."""
    lo = hi = None
    for block in inputs.split(_BOX_ROWS):
        # In place: a small tensor kept per block would fragment the heap.
        block_lo, block_hi = torch.aminmax(block, dim=0)
        lo = block_lo if lo is None else torch.minimum(lo, block_lo, out=lo)
        hi = block_hi if hi is None else torch.maximum(hi, block_hi, out=hi)
    return lo, hi


def _generator(generator):
    """The given generator, or a new one seeded from entropy (not the global RNG)."""
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    return generator


def _activation(name):
    if name not in ACTIVATIONS:
        raise ValueError(
            f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}."
        )
    return ACTIVATIONS[name]()
