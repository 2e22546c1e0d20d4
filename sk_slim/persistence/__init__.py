"""Storing a fitted model in one file that loading runs no code from.

:func:`save` writes a safetensors file: every tensor of the model (the
network's parameters and head, the optimizer's moments, slimTik's memory, the
head's posterior) as raw bytes with its dtype and shape, and in the file's text
header a JSON description: the format version, the versions that wrote it, the
estimator's class and parameters, and its fitted attributes, numpy arrays among
them as base64 bytes. :func:`load` reads that description through a fixed list
of types (JSON values, tuples, arrays of numbers or labels, sk_slim's state
classes) and nothing else, rebuilds the network from the estimator's parameters
(or from a factory the caller passes: code never comes from the file), checks
every tensor against the description and the rebuilt network, and only then
returns the model. See "Storing and sharing a model" in the user guide.
"""

import json
import os
import secrets
from contextlib import suppress

import numpy as np
import sklearn
import torch

from ._codec import Decoder, Encoder, no_constant
from ._models import BRIDGE, describe, load_bridge, load_estimator

__all__ = ["load", "save"]

# Readers refuse a file of a newer format; a change that old readers would
# misread increments it.
FORMAT_VERSION = 1
_HEADER_KEY = "sk_slim.model"


def save(model, path):
    """Save an sk_slim model to one safetensors file that loading runs no code from.

    Parameters
    ----------
    model : estimator
        A :class:`SlimTrainRegressor`, :class:`SlimTrainClassifier`,
        :class:`GNvproRegressor` or :class:`GNvproClassifier`, fitted or not,
        or an initialized :class:`sk_slim.skorch.SlimTrainNet` (or
        ``SlimTrainNetRegressor``).
    path : str or os.PathLike
        The file to write (replaced as a whole: a failed save leaves no
        partial file). ``.safetensors`` is the conventional suffix.

    See Also
    --------
    load : Read the model back.

    Notes
    -----
    Stored: the parameters (``get_params(deep=False)``), every fitted
    attribute (classes, target scaling, head, posterior, histories) and the
    trainer's state that ``warm_start`` and ``partial_fit`` continue; the
    tensors in safetensors, the rest as JSON in the file's header, with the
    format version and the sk_slim, torch, scikit-learn and numpy versions.
    Callbacks set with ``set_callbacks`` are not stored. A custom
    ``feature_extractor`` is stored by name only: :func:`load` needs it
    passed. Tensors are stored as on the CPU, so a GPU-trained model loads on
    a machine without one.

    Examples
    --------
    >>> import os, tempfile, warnings
    >>> from sklearn.datasets import make_friedman1
    >>> import sk_slim
    >>> X, y = make_friedman1(n_samples=100, random_state=0)
    >>> with warnings.catch_warnings():  # max_iter is reached
    ...     warnings.simplefilter("ignore")
    ...     model = sk_slim.GNvproRegressor(max_iter=2, random_state=0).fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> sk_slim.save(model, path)
    >>> restored = sk_slim.load(path)
    >>> bool((restored.predict(X) == model.predict(X)).all())
    True
    """
    save_file = _require_safetensors().torch.save_file
    encoder = Encoder()
    body = describe(model, encoder)
    metadata = {
        "format": "sk_slim",
        "format_version": str(FORMAT_VERSION),
        "class": body["class"],
        **_versions(),
        _HEADER_KEY: json.dumps(body, allow_nan=False),
    }
    # Written beside the target, then renamed over it: never a partial file.
    directory, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.tmp")
    try:
        save_file(encoder.tensors, temporary, metadata=metadata)
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def load(path, *, feature_extractor=None, net=None):
    """Load a model written by :func:`save`, running no code from the file.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.
    feature_extractor : callable, default=None
        For a model fitted with a custom ``feature_extractor``: that factory
        (or ``nn.Module`` class), called as in ``fit`` to rebuild the
        network's structure, whose tensors then come from the file. The
        default MLP and ``sk_slim.networks.make_mlp``/``make_resnet`` are
        rebuilt from the stored parameters.
    net : skorch.NeuralNet, default=None
        For a model saved from the skorch bridge: a net built as the saved
        one was (its module's code lives in your program); it is cloned,
        initialized, and given the file's tensors, optimizer and slimTik
        state and history. The template itself is left unchanged.

    Returns
    -------
    model : estimator
        The model, its tensors on the CPU (``device_`` still says where it
        was trained); it moves to the GPU when it predicts or trains there.

    Raises
    ------
    ValueError
        If the file is not a complete sk_slim file (a pickle, a truncated
        file), comes from a newer format version, names a type outside the
        allowed list, or holds a missing, extra or mismatched tensor; or if
        a needed ``feature_extractor`` or ``net`` is not given.

    See Also
    --------
    save : Write a model.

    Examples
    --------
    >>> import os, tempfile, warnings
    >>> from sklearn.datasets import make_friedman1
    >>> import sk_slim
    >>> from sk_slim.networks import make_resnet
    >>> X, y = make_friedman1(n_samples=100, random_state=0)
    >>> model = sk_slim.SlimTrainRegressor(
    ...     feature_extractor=make_resnet, feature_extractor_kwargs={"depth": 2},
    ...     max_iter=2, early_stopping=False, random_state=0,
    ... )
    >>> with warnings.catch_warnings():  # max_iter is reached
    ...     warnings.simplefilter("ignore")
    ...     model = model.fit(X, y)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
    >>> sk_slim.save(model, path)
    >>> mean, std = sk_slim.load(path).predict(X[:3], return_std=True)
    >>> bool((mean == model.predict(X[:3])).all())
    True
    """
    safetensors = _require_safetensors()
    try:
        with safetensors.safe_open(os.fspath(path), framework="pt") as file:
            metadata = file.metadata() or {}
            body = _read_header(metadata, path)
            decoder = Decoder(file)
            if body["class"] in BRIDGE:
                model = load_bridge(body, decoder, net)
            else:
                model = load_estimator(body, decoder, feature_extractor)
            decoder.check_all_used()
    except safetensors.SafetensorError as error:
        raise ValueError(
            f"{os.fspath(path)!r} is not a complete safetensors file, so not an "
            f"sk_slim model (a pickle, a truncated or another file): {error}"
        ) from error
    except (KeyError, TypeError, AttributeError, IndexError, RecursionError) as error:
        raise ValueError(
            f"{os.fspath(path)!r} holds an inconsistent sk_slim model "
            f"description ({type(error).__name__}: {error})."
        ) from error
    return model


def _require_safetensors():
    try:
        import safetensors.torch
    except ImportError as error:
        raise ImportError(
            "sk_slim.save and sk_slim.load need safetensors; install it with: "
            "pip install 'sk_slim[io]'"
        ) from error
    return safetensors


def _versions():
    from .. import __version__

    return {
        "sk_slim_version": __version__,
        "torch_version": torch.__version__,
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
    }


def _read_header(metadata, path):
    """The file's JSON description, after the format and version checks."""
    if metadata.get("format") != "sk_slim" or _HEADER_KEY not in metadata:
        raise ValueError(
            f"{os.fspath(path)!r} is a safetensors file but not an sk_slim model "
            "(its header has no sk_slim description)."
        )
    version = metadata.get("format_version", "")
    if not version.isdigit():
        raise ValueError(f"Unreadable format version {version!r}.")
    if int(version) > FORMAT_VERSION:
        raise ValueError(
            f"{os.fspath(path)!r} has format version {version}, newer than this "
            f"sk_slim reads ({FORMAT_VERSION}); it was written by sk_slim "
            f"{metadata.get('sk_slim_version')}: upgrade sk_slim to load it."
        )
    body = json.loads(metadata[_HEADER_KEY], parse_constant=no_constant)
    if not isinstance(body, dict) or body.get("class") != metadata.get("class"):
        raise ValueError("The model's class is not the one the header names.")
    return body
