"""Where and how a fit runs: the device, torch's thread count, the seed and what
it reaches."""

import copy
import inspect
from collections import deque
from contextlib import contextmanager

import numpy as np
import torch
from sklearn.utils import check_random_state

__all__ = []


def n_threads(hidden_layer_sizes, n_features, rows_per_step):
    """Torch intra-op threads for this network width and the rows a step touches.

    Measured on the 2-core dev VM (slimTrain epoch, 2000 rows, batch 200):
    width 64: 14.4 ms with 1 thread, 12.6 ms with 2; width 256: 144 vs 173
    ms; width 512: 639 vs 429 ms. Two threads also made tiny ops
    intermittently 100x slower there, so one thread is used unless a step's
    matrix work per layer reaches that of a width-512 layer on 200 rows. The
    rows are those of one step: a mini-batch for slimTrain, all rows (or
    GNvpro's sample) for a full-batch Gauss-Newton step.
    """
    width = max(np.atleast_1d(hidden_layer_sizes).tolist() + [n_features])
    work = rows_per_step * width * width
    return 1 if work < 200 * 512 * 512 else min(4, torch.get_num_threads() or 1)


def resolve_device(device):
    """'auto' -> 'cuda' when available, else 'cpu'; validate explicit devices."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device={device!r} is not a valid torch device.") from error
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available.")
    if parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:k]', got {device!r}.")
    return str(parsed)


def draw_seed(random_state):
    """A torch seed from ``random_state``; ``None`` draws OS entropy so the
    user's global numpy RNG is left alone."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


@contextmanager
def torch_threads(n_threads):
    """Run with ``n_threads`` torch intra-op threads, then restore the user's."""
    previous = torch.get_num_threads()
    if n_threads == previous:
        yield
        return
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def extractor_kwargs(factory, kwargs, generator):
    """``feature_extractor_kwargs`` for one fit, so that ``random_state`` reaches
    every draw: a ``torch.Generator`` given there is copied (its state is the
    parameter; fitting never consumes it), and a factory that takes a
    ``generator`` keyword defaulting to None (``make_mlp``, ``make_resnet``) and
    got none gets the fit's (a CPU generator)."""
    kwargs = dict(kwargs or {})
    for name, value in kwargs.items():
        if isinstance(value, torch.Generator):
            kwargs[name] = torch.Generator(value.device).set_state(value.get_state())
    if "generator" not in kwargs:
        try:
            parameter = inspect.signature(factory).parameters.get("generator")
        except (TypeError, ValueError):  # no signature to read (a builtin)
            parameter = None
        # Not one bound already (a functools.partial) nor positional-only.
        if (
            parameter is not None
            and parameter.default is None
            and parameter.kind is not inspect.Parameter.POSITIONAL_ONLY
        ):
            kwargs["generator"] = generator
    return kwargs


def on_cpu(value):
    """A copy of ``value`` with every tensor in it on the CPU (modules,
    tensors, and the dicts, deques, lists, tuples and dataclasses holding them)."""
    if isinstance(value, torch.nn.Module):
        return copy.deepcopy(value).cpu()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: on_cpu(v) for k, v in value.items()}
    if isinstance(value, deque):
        return deque(map(on_cpu, value), value.maxlen)
    if isinstance(value, list | tuple):
        return type(value)(map(on_cpu, value))
    if hasattr(value, "__dict__") and not callable(value):
        value = copy.copy(value)  # a dataclass, the solver's state
        vars(value).update({k: on_cpu(v) for k, v in vars(value).items()})
    return value
