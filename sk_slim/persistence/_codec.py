"""The stored form of values: a JSON tree, with the tensors set apart.

JSON values stay as they are; every other value is a JSON object tagged by
``"$type"``: tuples, deques, dicts with keys other than strings, non-finite
floats, numpy arrays (numbers as base64 bytes, labels as lists) and scalars,
torch dtypes, CPU generators, sk_slim's built-in network factories, and the
sk_slim state classes listed in ``STATE_TYPES`` (their attributes, by name).
Tensors are referenced by key and stored by the caller (in safetensors). The
decoder accepts these tags and names only, so decoding builds data, never
runs code named by the file.
"""

import base64
import math
from collections import deque

import numpy as np
import torch

from ..linalg import SlimTik, SlimTikState
from ..networks import make_mlp, make_resnet
from ..preprocessing import InputEncoder
from ..training import GNvproState, HeadPosterior, SlimTrainState

__all__ = []

# The classes a file may name, by their public names.
STATE_TYPES = {
    "sk_slim.linalg.SlimTik": SlimTik,
    "sk_slim.linalg.SlimTikState": SlimTikState,
    "sk_slim.training.SlimTrainState": SlimTrainState,
    "sk_slim.training.GNvproState": GNvproState,
    "sk_slim.training.HeadPosterior": HeadPosterior,
    "sk_slim.preprocessing.InputEncoder": InputEncoder,
}
_STATE_NAMES = {cls: name for name, cls in STATE_TYPES.items()}
# Attributes a stored object may lack: an encoder fitted on unnamed columns.
_OPTIONAL = {InputEncoder: {"feature_names_in_"}}
# Attributes added since 0.1.0: files written before lack them, and they load
# with the value of a fresh instance.
_ADDED = {GNvproState: {"step_norm"}}
FACTORIES = {
    "sk_slim.networks.make_mlp": make_mlp,
    "sk_slim.networks.make_resnet": make_resnet,
}
_TORCH_DTYPES = {
    str(dtype).removeprefix("torch."): dtype
    for dtype in (
        torch.bool,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
    )
}


class Encoder:
    """Values -> a JSON-able tree; tensors set apart under unique keys."""

    def __init__(self):
        self.tensors = {}

    def tensor(self, value, key):
        while key in self.tensors:
            key += "'"
        # A copy: stored tensors never share memory (safetensors refuses).
        self.tensors[key] = value.detach().to("cpu", copy=True).contiguous()
        return {
            "$type": "tensor",
            "key": key,
            "dtype": str(value.dtype).removeprefix("torch."),
            "shape": list(value.shape),
        }

    def state_dict(self, module, path):
        return {
            name: self.tensor(value, f"{path}.{name}")
            for name, value in module.state_dict().items()
        }

    def encode(self, value, path):
        if isinstance(value, np.generic):  # first: np.float64 is a float too
            return self._numpy_scalar(value, path)
        if value is None or isinstance(value, bool | str):
            return value
        if type(value) is int:
            return value
        if type(value) is float:
            finite = math.isfinite(value)
            return value if finite else {"$type": "float", "value": repr(value)}
        if isinstance(value, torch.Tensor):
            return self.tensor(value, path)
        if isinstance(value, np.ndarray):
            return self._array(value, path)
        if isinstance(value, torch.dtype):
            return {"$type": "torch.dtype", "name": str(value).removeprefix("torch.")}
        if isinstance(value, list):
            return [self.encode(v, f"{path}.{i}") for i, v in enumerate(value)]
        if isinstance(value, tuple | deque):
            items = [self.encode(v, f"{path}.{i}") for i, v in enumerate(value)]
            if isinstance(value, tuple):
                return {"$type": "tuple", "items": items}
            return {"$type": "deque", "items": items, "maxlen": value.maxlen}
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value) and "$type" not in value:
                return {k: self.encode(v, f"{path}.{k}") for k, v in value.items()}
            items = [
                [self.encode(k, f"{path}.key"), self.encode(v, f"{path}.{k}")]
                for k, v in value.items()
            ]
            return {"$type": "dict", "items": items}
        if type(value) in _STATE_NAMES:
            fields = {k: self.encode(v, f"{path}.{k}") for k, v in vars(value).items()}
            return {"$type": "object", "class": _STATE_NAMES[type(value)], **fields}
        for name, factory in FACTORIES.items():
            if value is factory:
                return {"$type": "factory", "name": name}
        if type(value) is np.random.RandomState:
            state = list(value.get_state(legacy=True))
            return {"$type": "RandomState", "state": self.encode(state, path)}
        if type(value) is torch.Generator and value.device.type == "cpu":
            state = self.tensor(value.get_state(), path)
            return {"$type": "torch.Generator", "state": state}
        raise TypeError(
            f"sk_slim.save cannot store {path!r}, a {type(value).__qualname__}: only "
            "JSON values, tuples, numpy arrays and scalars, tensors, CPU generators "
            "and sk_slim's state classes have a stored form."
        )

    def _numpy_scalar(self, value, path):
        dtype = value.dtype
        if dtype.kind not in "biufU":
            raise TypeError(f"sk_slim.save cannot store {path!r} of dtype {dtype}.")
        return {
            "$type": "numpy.scalar",
            "dtype": dtype.str,
            "value": self.encode(value.item(), path),
        }

    def _array(self, array, path):
        dtype = array.dtype
        described = {"$type": "numpy.ndarray", "dtype": dtype.str}
        described["shape"] = list(array.shape)
        if dtype.kind in "biuf":
            data = np.ascontiguousarray(array).tobytes()
            described["data"] = base64.b64encode(data).decode("ascii")
        elif dtype.kind in "UO":  # labels, feature names
            items = array.ravel().tolist()
            described["items"] = [self.encode(v, f"{path}.item") for v in items]
        else:
            raise TypeError(f"sk_slim.save cannot store {path!r} of dtype {dtype}.")
        return described


class Decoder:
    """A JSON-able tree -> values, through the allowed types only."""

    def __init__(self, file):
        self.file = file
        self.keys = set(file.keys())
        self.used = set()

    def check_all_used(self):
        extra = self.keys - self.used
        if extra:
            raise ValueError(
                "The file holds tensors its description does not name: "
                f"{sorted(extra)}."
            )

    def tensor(self, node, path):
        expect(node, "tensor", path)
        key = node["key"]
        if key not in self.keys or key in self.used:
            raise ValueError(f"Tensor {key!r} ({path}) is missing from the file.")
        self.used.add(key)
        value = self.file.get_tensor(key)
        dtype = str(value.dtype).removeprefix("torch.")
        if dtype != node["dtype"] or list(value.shape) != node["shape"]:
            raise ValueError(
                f"Tensor {key!r} ({path}) is {dtype} of shape {list(value.shape)}; "
                f"the description says {node['dtype']} of shape {node['shape']}."
            )
        return value

    def decode(self, node, path):
        if node is None or isinstance(node, bool | int | float | str):
            return node
        if isinstance(node, list):
            return [self.decode(v, f"{path}.{i}") for i, v in enumerate(node)]
        if "$type" not in node:
            return {k: self.decode(v, f"{path}.{k}") for k, v in node.items()}
        kind = node["$type"]
        if kind == "float":
            if node["value"] not in ("nan", "inf", "-inf"):
                raise ValueError(f"{path}: {node['value']!r} is not a float.")
            return float(node["value"])
        if kind == "tensor":
            return self.tensor(node, path)
        if kind == "numpy.ndarray":
            return self._array(node, path)
        if kind == "numpy.scalar":
            dtype = _numpy_dtype(node["dtype"], "biufU", path)
            return dtype.type(self.decode(node["value"], path))
        if kind == "torch.dtype":
            return _allowed(_TORCH_DTYPES, node["name"], "torch dtype", path)
        if kind in ("tuple", "deque"):
            items = [self.decode(v, f"{path}.{i}") for i, v in enumerate(node["items"])]
            if kind == "tuple":
                return tuple(items)
            return deque(items, maxlen=optional_size(node["maxlen"], path))
        if kind == "dict":
            return {
                self.decode(k, path): self.decode(v, path) for k, v in node["items"]
            }
        if kind == "object":
            return self._object(node, path)
        if kind == "factory":
            return _allowed(FACTORIES, node["name"], "factory", path)
        if kind == "RandomState":
            random_state = np.random.RandomState()
            random_state.set_state(tuple(self.decode(node["state"], path)))
            return random_state
        if kind == "torch.Generator":
            return torch.Generator().set_state(self.tensor(node["state"], path))
        raise ValueError(
            f"{path}: type {kind!r} is not one sk_slim.load accepts; the file was "
            "not written by sk_slim.save, or by a newer version."
        )

    def _object(self, node, path):
        name = node["class"]
        cls = _allowed(STATE_TYPES, name, "class", path)
        fields = {k: v for k, v in node.items() if k not in ("$type", "class")}
        fresh = _fresh(cls)
        expected = set(vars(fresh))
        added = _ADDED.get(cls, set())
        if not expected - added <= set(fields) <= expected | _OPTIONAL.get(cls, set()):
            raise ValueError(
                f"{path}: a {name} has the attributes {sorted(expected)}, the file "
                f"gives {sorted(fields)}."
            )
        value = object.__new__(cls)  # attributes as stored, as pickle does
        vars(value).update({k: getattr(fresh, k) for k in added - set(fields)})
        vars(value).update(
            {k: self.decode(v, f"{path}.{k}") for k, v in fields.items()}
        )
        return value

    def _array(self, node, path):
        dtype = _numpy_dtype(node["dtype"], "biufUO", path)
        shape = tuple(optional_size(n, path) for n in node["shape"])
        if None in shape:
            raise ValueError(f"{path}: shape {list(shape)} has an unknown size.")
        size = math.prod(shape)
        if "data" in node:
            if dtype.kind not in "biuf":
                raise ValueError(f"{path}: raw data of dtype {dtype}.")
            data = base64.b64decode(node["data"], validate=True)
            if len(data) != size * dtype.itemsize:
                raise ValueError(
                    f"{path}: {len(data)} bytes for {size} values of {dtype}."
                )
            return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        items = [self.decode(v, path) for v in node["items"]]
        if dtype.kind not in "UO" or len(items) != size:
            raise ValueError(f"{path}: {len(items)} items of {dtype} for {shape}.")
        if dtype.kind == "U" and not all(isinstance(v, str) for v in items):
            raise ValueError(f"{path}: an array of strings holds other values.")
        array = np.empty(size, dtype=dtype)
        for i, item in enumerate(items):
            array[i] = item
        return array.reshape(shape)


def _allowed(allowed, name, what, path):
    """``allowed[name]``, for a name from the file."""
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(
            f"{path}: {what} {name!r} is not one sk_slim.load accepts (allowed: "
            f"{sorted(allowed)})."
        )
    return allowed[name]


def expect(node, kind, path):
    if not isinstance(node, dict) or node.get("$type") != kind:
        raise ValueError(f"{path}: expected a stored {kind}.")


def optional_size(value, path):
    if value is None or (type(value) is int and value >= 0):
        return value
    raise ValueError(f"{path}: {value!r} is not a size.")


def _numpy_dtype(name, kinds, path):
    dtype = np.dtype(str(name))
    if dtype.kind not in kinds or dtype.fields is not None or dtype.shape != ():
        raise ValueError(f"{path}: dtype {name!r} is not one sk_slim.load accepts.")
    return dtype


def _fresh(cls):
    """An instance of an allowed state class as its code builds it."""
    if cls is SlimTik:
        return SlimTik(1, 1)
    if cls is SlimTikState:
        return SlimTikState(W=torch.zeros(1, 1), Lambda=1.0)
    if cls is SlimTrainState:
        return SlimTrainState(optimizer={}, slimtik=None)
    if cls is HeadPosterior:
        return HeadPosterior(torch.zeros(1, 1), torch.zeros(1))
    if cls is InputEncoder:  # fitted, on data without column names
        return InputEncoder().fit(np.zeros((1, 1)))
    return cls()


def no_constant(name):
    raise ValueError(f"Not strict JSON: {name}.")
