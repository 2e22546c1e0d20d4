"""What is stored of each kind of model, and how it is rebuilt.

sk_slim's four estimators: their parameters and fitted attributes, the
network as its tensors only (rebuilt from the parameters, or by the factory
the caller passes for a custom ``feature_extractor``). The skorch bridge: the
modules', criteria's and optimizers' state, slimTik's state and the history,
loaded into a net the caller builds.
"""

import torch
from sklearn.base import clone

from .._gnvpro import GNvproRegressor
from .._gnvpro_classifier import GNvproClassifier
from .._runtime import extractor_kwargs
from .._slimtrain import SlimTrainRegressor
from .._slimtrain_classifier import SlimTrainClassifier
from ..linalg import SlimTik
from ..networks import SeparableNet, make_mlp, make_resnet
from ._codec import FACTORIES, expect, optional_size

__all__ = []

ESTIMATORS = {
    cls.__name__: cls
    for cls in (
        SlimTrainRegressor,
        SlimTrainClassifier,
        GNvproRegressor,
        GNvproClassifier,
    )
}
BRIDGE = ("SlimTrainNet", "SlimTrainNetRegressor")  # sk_slim.skorch
# Scratch of the epoch loop and scikit-learn's callback bookkeeping (callbacks
# are set on a model, not stored with it).
_NOT_STORED = frozenset(
    {
        "_no_improvement_count",
        "_run_best",
        "_reached_max_iter",
        "_previous_run",
        "_runs",
        "_skl_callbacks",
        "_skl_callbacks_to_teardown",
        "_callback_fit_ctx",
    }
)


def describe(model, encoder):
    """The JSON description of ``model``; its tensors go to ``encoder``."""
    cls = type(model)
    if cls.__module__ == "sk_slim.skorch" and cls.__name__ in BRIDGE:
        return _describe_bridge(model, encoder)
    if ESTIMATORS.get(cls.__name__) is not cls:
        raise TypeError(
            f"sk_slim.save stores sk_slim's estimators and skorch bridge nets, not "
            f"{cls.__module__}.{cls.__qualname__} (a subclass has code of its own)."
        )
    params = model.get_params(deep=False)
    factory = params.get("feature_extractor")
    described = {
        name: encoder.encode(value, name)
        for name, value in params.items()
        if name != "feature_extractor"
    }
    if factory is None or any(factory is f for f in FACTORIES.values()):
        described["feature_extractor"] = encoder.encode(factory, "feature_extractor")
    else:  # the user's code: stored by name, passed again to load
        name = getattr(factory, "__qualname__", type(factory).__qualname__)
        module = getattr(factory, "__module__", "")
        described["feature_extractor"] = {
            "$type": "custom_factory",
            "name": f"{module}.{name}",
        }
    attributes = {}
    for name, value in vars(model).items():
        if name in params or name in _NOT_STORED:
            continue
        if name == "module_":
            attributes[name] = _network(encoder, value, name)
        else:
            attributes[name] = encoder.encode(value, name)
    return {"class": cls.__name__, "params": described, "attributes": attributes}


def _describe_bridge(net, encoder):
    if not getattr(net, "initialized_", False):
        raise ValueError("Initialize or fit the skorch net before saving it.")
    modules = {
        name: encoder.state_dict(getattr(net, f"{name}_"), f"{name}_")
        for name in [*net._modules, *net._criteria]
    }
    optimizers = {
        name: encoder.encode(getattr(net, f"{name}_").state_dict(), f"{name}_")
        for name in net._optimizers
    }
    return {
        "class": type(net).__name__,
        "modules": modules,
        "optimizers": optimizers,
        "slimtik_": encoder.encode(net.slimtik_, "slimtik_"),
        "history_": encoder.encode(list(net.history_), "history_"),
    }


def _network(encoder, net, path):
    if type(net) is not SeparableNet:
        raise TypeError(f"{path} is a {type(net).__name__}, not a SeparableNet.")
    return {
        "$type": "separable_net",
        "n_features": net.W.shape[0],
        "n_outputs": net.W.shape[1],
        "training": net.training,
        "state": encoder.state_dict(net, path),
    }


def load_estimator(body, decoder, feature_extractor):
    name = body["class"]
    if name not in ESTIMATORS:
        raise ValueError(f"Class {name!r} is not an sk_slim estimator.")
    cls = ESTIMATORS[name]
    params = {
        k: decoder.decode(v, f"params.{k}")
        for k, v in body["params"].items()
        if k != "feature_extractor"
    }
    stored = body["params"].get("feature_extractor")
    if isinstance(stored, dict) and stored.get("$type") == "custom_factory":
        if feature_extractor is None:
            raise ValueError(
                f"This {name} was fitted with the custom feature_extractor "
                f"{stored['name']!r}; a file holds no code: pass it, "
                "sk_slim.load(path, feature_extractor=...)."
            )
        params["feature_extractor"] = feature_extractor
    elif feature_extractor is not None:
        raise ValueError(
            f"This {name} was fitted with the feature extractor its parameters "
            "build; feature_extractor is for models fitted with a custom one."
        )
    else:
        params["feature_extractor"] = decoder.decode(stored, "feature_extractor")
    try:
        estimator = cls(**params)
    except TypeError as error:
        raise ValueError(f"The stored parameters are not {name}'s: {error}") from error
    attributes = dict(body["attributes"])
    network = attributes.pop("module_", None)
    for key, node in attributes.items():
        # Fitted attributes end in '_' or are private state; never a method
        # (predict) or a dunder (__class__, __dict__).
        fitted = isinstance(key, str) and (key.endswith("_") or key.startswith("_"))
        dunder = isinstance(key, str) and key.startswith("__")
        if not fitted or dunder or key in params or key in _NOT_STORED:
            raise ValueError(f"{key!r} is not a fitted attribute.")
        setattr(estimator, key, decoder.decode(node, key))
    if network is not None:
        estimator.module_ = _rebuild_network(estimator, network, decoder)
    return estimator


def _rebuild_network(estimator, node, decoder):
    """The fitted network: built as ``fit`` builds it, then the file's tensors."""
    expect(node, "separable_net", "module_")
    dtype = estimator._dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"The network's dtype {dtype} is not float32 or float64.")
    n_in = estimator._n_network_inputs()
    # Initial values are overwritten: no data, no global RNG, no box search.
    generator = torch.Generator().manual_seed(0)
    factory = estimator.feature_extractor
    if factory is None:
        sizes = estimator._hidden_sizes()
        extractor = make_mlp(n_in, sizes, estimator.activation, generator=generator)
    elif factory is make_mlp or factory is make_resnet:
        kwargs = dict(estimator.feature_extractor_kwargs or {})
        kwargs.update(init="glorot", data=None, generator=generator, device="cpu")
        extractor = factory(n_in, **kwargs)
    else:
        kwargs = extractor_kwargs(
            factory, estimator.feature_extractor_kwargs, generator
        )
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                extractor = factory(n_in, **kwargs)
        except Exception as error:  # the user's code: not the file's fault
            raise RuntimeError(
                f"feature_extractor failed to build the network: {error!r}"
            ) from error
    n_features = optional_size(node["n_features"], "module_.n_features")
    n_outputs = optional_size(node["n_outputs"], "module_.n_outputs")
    extractor = extractor.to(device="cpu", dtype=dtype)
    net = SeparableNet(extractor, n_features, n_outputs).to(dtype=dtype)
    _load_state(net, node["state"], decoder, "module_")
    return net.train(bool(node["training"]))


def _load_state(module, stored, decoder, path):
    """Copy the file's tensors into ``module``: the same names, shapes, dtypes."""
    expected = module.state_dict()
    if set(stored) != set(expected):
        missing = sorted(set(expected) - set(stored))
        extra = sorted(set(stored) - set(expected))
        raise ValueError(
            f"The rebuilt {path} does not match the file's: missing {missing}, "
            f"unexpected {extra} (a different feature_extractor or parameters?)."
        )
    state = {}
    for name, node in stored.items():
        value = decoder.tensor(node, f"{path}.{name}")
        like = expected[name]
        if value.shape != like.shape or value.dtype != like.dtype:
            raise ValueError(
                f"{path}.{name} is {value.dtype} of shape {tuple(value.shape)} in "
                f"the file; the rebuilt network has {like.dtype} of shape "
                f"{tuple(like.shape)}."
            )
        state[name] = value
    module.load_state_dict(state, strict=True)


def load_bridge(body, decoder, template):
    from skorch.history import History

    if template is None:
        raise ValueError(
            f"This file holds a skorch {body['class']}: its module is your code, "
            "so pass a net built as the saved one was: sk_slim.load(path, net=...)."
        )
    if type(template).__name__ != body["class"]:
        raise ValueError(
            f"The file holds a {body['class']}; net is a {type(template).__name__}."
        )
    net = clone(template).initialize()
    if set(body["modules"]) != {*net._modules, *net._criteria}:
        raise ValueError("The net's modules are not the saved net's.")
    if set(body["optimizers"]) != set(net._optimizers):
        raise ValueError("The net's optimizers are not the saved net's.")
    for name, stored in body["modules"].items():
        _load_state(getattr(net, f"{name}_"), stored, decoder, f"{name}_")
    for name, stored in body["optimizers"].items():
        getattr(net, f"{name}_").load_state_dict(decoder.decode(stored, name))
    slimtik = decoder.decode(body["slimtik_"], "slimtik_")
    if type(slimtik) is not SlimTik:
        raise ValueError("slimtik_ is not a stored SlimTik.")
    net.slimtik_ = slimtik
    net.history_ = History(decoder.decode(body["history_"], "history_"))
    return net
