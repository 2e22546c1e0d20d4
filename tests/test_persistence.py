"""sk_slim.save / sk_slim.load: a round trip is bit for bit, loading runs no code
from the file, and every damaged or foreign file is refused with a clear error."""

import ast
import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.datasets import make_classification, make_friedman1
from sklearn.exceptions import ConvergenceWarning
from torch import nn

import sk_slim
from sk_slim import (
    GNvproClassifier,
    GNvproRegressor,
    SlimTrainClassifier,
    SlimTrainRegressor,
)
from sk_slim.networks import make_mlp, make_resnet

safetensors_torch = pytest.importorskip("safetensors.torch")
from safetensors import safe_open  # noqa: E402 (after the importorskip)

PACKAGE = Path(sk_slim.__file__).parent
TINY = {"hidden_layer_sizes": (8,), "max_iter": 2, "random_state": 0}


def _fit(model, X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y, **kwargs)


@pytest.fixture(scope="module")
def regression():
    X, y = make_friedman1(n_samples=240, random_state=0)  # early stopping on
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])]), y


@pytest.fixture(scope="module")
def labels():
    X, y = make_classification(
        n_samples=240, n_features=6, n_informative=4, n_classes=3, random_state=0
    )
    return X, np.array(["ant", "bee", "cat"])[y]


def _round_trip(model, tmp_path, **load_kwargs):
    path = tmp_path / "model.safetensors"
    sk_slim.save(model, path)
    return sk_slim.load(path, **load_kwargs)


def _assert_same_outputs(model, restored, X):
    """Every output bit for bit: predictions, features, the exported network."""
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    np.testing.assert_array_equal(restored.transform(X), model.transform(X))
    X_tensor = torch.as_tensor(np.array(X), dtype=restored._dtype)
    with torch.no_grad():
        assert torch.equal(restored.to_torch()(X_tensor), model.to_torch()(X_tensor))
    if hasattr(model, "predict_proba"):
        np.testing.assert_array_equal(restored.predict_proba(X), model.predict_proba(X))
        np.testing.assert_array_equal(
            restored.decision_function(X), model.decision_function(X)
        )
    else:
        for expected, got in zip(
            model.predict(X, return_std=True),
            restored.predict(X, return_std=True),
            strict=True,
        ):
            np.testing.assert_array_equal(got, expected)


def _assert_same_state(model, restored):
    """The same attributes, of the same types and values, as the model's."""
    skipped = {"module_", "_no_improvement_count", "_run_best", "_reached_max_iter"}
    skipped |= {"_previous_run", "_runs"}
    names = {k for k in vars(model) if k not in skipped}
    assert names == {k for k in vars(restored) if k not in skipped}
    for name in names:
        expected, got = getattr(model, name), getattr(restored, name)
        assert type(got) is type(expected), name
        if isinstance(expected, np.ndarray):
            np.testing.assert_array_equal(got, expected)
            assert got.dtype == expected.dtype, name
        elif isinstance(expected, torch.Tensor):
            assert torch.equal(got, expected), name
        elif isinstance(expected, float) and np.isnan(expected):
            assert np.isnan(got), name
        elif isinstance(expected, list | tuple | str | int | float | torch.dtype):
            assert got == expected, name


ESTIMATORS = [
    SlimTrainRegressor,
    GNvproRegressor,
    SlimTrainClassifier,
    GNvproClassifier,
]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_round_trip_is_bit_for_bit(cls, regression, labels, tmp_path):
    X, y = regression if cls in (SlimTrainRegressor, GNvproRegressor) else labels
    model = _fit(cls(**TINY), X, y)
    restored = _round_trip(model, tmp_path)
    assert type(restored) is cls and restored.get_params() == model.get_params()
    _assert_same_outputs(model, restored, X)
    _assert_same_state(model, restored)


@pytest.mark.parametrize("cls", [SlimTrainRegressor, GNvproRegressor])
def test_warm_start_continues_as_the_saved_model_would(cls, regression, tmp_path):
    # The trainer's state and the random stream are stored: both go on alike.
    X, y = regression
    model = _fit(cls(**TINY, warm_start=True), X, y)
    restored = _round_trip(model, tmp_path)
    _fit(model, X, y)
    _fit(restored, X, y)
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    assert restored.loss_curve_ == model.loss_curve_


def test_partial_fit_continues_the_streamed_head(tmp_path):
    # slimTik's memory (a deque of Grams) and the Adam moments are stored.
    X, y = make_friedman1(n_samples=120, random_state=1)
    model = SlimTrainRegressor(hidden_layer_sizes=(8,), batch_size=20, random_state=0)
    model.partial_fit(X, y)
    restored = _round_trip(model, tmp_path)
    assert len(restored._trainer_state.slimtik.state.grams) == 6
    model.partial_fit(X, y)
    restored.partial_fit(X, y)
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))


def test_binary_classifier_with_a_temperature(tmp_path):
    X, y = make_classification(n_samples=80, n_features=4, random_state=0)
    model = _fit(SlimTrainClassifier(**TINY), X, y.astype(bool))
    restored = _round_trip(model, tmp_path)
    assert restored.final_head_ == "least_squares" and restored.classes_.dtype == bool
    assert restored.temperature_ == model.temperature_
    _assert_same_outputs(model, restored, X)


def test_parameters_of_every_stored_kind(tmp_path):
    # A RandomState, a dict with non-string keys, a float32 network, partial_fit.
    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    model = GNvproClassifier(
        hidden_layer_sizes=[6, 5],
        max_iter=2,
        class_weight={0: 1.0, 1: 2.5},
        random_state=np.random.RandomState(3),
        dtype="float32",
    )
    _fit(model, X, y)
    restored = _round_trip(model, tmp_path)
    assert restored.class_weight == {0: 1.0, 1: 2.5}
    assert restored.hidden_layer_sizes == [6, 5]
    state = restored.random_state.get_state()
    for got, expected in zip(state, model.random_state.get_state(), strict=True):
        np.testing.assert_array_equal(got, expected)
    assert restored.module_.W.dtype == torch.float32
    _assert_same_outputs(model, restored, X)


def test_an_unfitted_estimator_keeps_its_parameters(tmp_path):
    model = SlimTrainRegressor(hidden_layer_sizes=(3, 2), activation="relu")
    restored = _round_trip(model, tmp_path)
    assert restored.get_params() == model.get_params()
    assert not hasattr(restored, "module_")


@pytest.mark.parametrize(
    "factory, kwargs",
    [
        (make_mlp, {"hidden_layer_sizes": (6, 4), "activation": "relu"}),
        (make_resnet, {"width": 5, "depth": 2, "antisymmetric": True}),
        (make_mlp, {"hidden_layer_sizes": (4,), "generator": torch.Generator()}),
    ],
    ids=["make_mlp", "make_resnet", "make_mlp-generator"],
)
def test_builtin_extractors_are_rebuilt_from_parameters(factory, kwargs, tmp_path):
    X, y = make_friedman1(n_samples=60, random_state=0)
    model = SlimTrainRegressor(
        feature_extractor=factory,
        feature_extractor_kwargs=kwargs,
        max_iter=2,
        early_stopping=False,
        random_state=0,
    )
    restored = _round_trip(_fit(model, X, y), tmp_path)
    assert restored.feature_extractor is factory
    _assert_same_outputs(model, restored, X)


class TwoLayers(nn.Module):
    """A user's extractor: its code is in the program, never in the file."""

    def __init__(self, n_in, width=5):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(n_in, width), nn.Tanh())

    def forward(self, x):
        return self.layers(x)


def test_custom_extractor_is_rebuilt_by_the_factory_passed_to_load(tmp_path):
    X, y = make_friedman1(n_samples=60, random_state=0)
    model = GNvproRegressor(
        feature_extractor=TwoLayers,
        feature_extractor_kwargs={"width": 4},
        max_iter=2,
        random_state=0,
    )
    path = tmp_path / "model.safetensors"
    sk_slim.save(_fit(model, X, y), path)
    with pytest.raises(ValueError, match="custom feature_extractor.*TwoLayers"):
        sk_slim.load(path)
    with pytest.raises(ValueError, match="does not match|shape"):
        sk_slim.load(path, feature_extractor=lambda n_in, width: TwoLayers(n_in, 7))
    restored = sk_slim.load(path, feature_extractor=TwoLayers)
    _assert_same_outputs(model, restored, X)


def test_feature_extractor_is_refused_for_a_built_in_network(regression, tmp_path):
    X, y = regression
    path = tmp_path / "model.safetensors"
    sk_slim.save(_fit(GNvproRegressor(**TINY), X, y), path)
    with pytest.raises(ValueError, match="for models fitted with a custom one"):
        sk_slim.load(path, feature_extractor=TwoLayers)


def test_a_gpu_trained_model_loads_on_the_cpu(regression, tmp_path):
    # What a CUDA fit leaves, as far as a CPU-only machine can build it: device_
    # says cuda; the stored tensors are the CPU's; predict runs on the CPU.
    X, y = regression
    model = _fit(SlimTrainRegressor(**TINY), X, y)
    expected = model.predict(X)
    model.device_ = "cuda"
    restored = _round_trip(model, tmp_path)
    assert restored.device_ == "cuda" and not restored.module_.W.is_cuda
    if not torch.cuda.is_available():
        np.testing.assert_array_equal(restored.predict(X), expected)
    # Pickle's path too: __getstate__ maps the tensors, without torch.load.
    unpickled = pickle.loads(pickle.dumps(model))
    assert unpickled._trainer_state.slimtik.state.W.device.type == "cpu"
    if not torch.cuda.is_available():
        np.testing.assert_array_equal(unpickled.predict(X), expected)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_cuda_model_is_stored_with_cpu_tensors(cls, regression, labels, tmp_path):
    X, y = regression if cls in (SlimTrainRegressor, GNvproRegressor) else labels
    model = _fit(cls(**TINY, device="cuda"), X, y)
    path = tmp_path / "model.safetensors"
    sk_slim.save(model, path)
    with safe_open(path, framework="pt") as file:
        assert all(file.get_tensor(k).device.type == "cpu" for k in file.keys())
    restored = sk_slim.load(path)
    assert restored.device_ == model.device_ and not restored.module_.W.is_cuda
    _assert_same_outputs(model, restored, X)  # it moves to the GPU to predict


# ------------------------------------------------------------- refused files


class _RunsCode:
    """A pickle payload: unpickling it writes a file (as os.system could run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "code ran"))


def test_a_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "ran.txt"
    payload = pickle.dumps(_RunsCode(marker))
    pickle.loads(payload)  # under pickle, the payload runs
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "model.safetensors"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match="not a complete safetensors file"):
        sk_slim.load(path)
    assert not marker.exists()


def _rewrite(path, tensors=None, body=None, **metadata):
    """Write ``path`` again with changed tensors, description or header."""
    with safe_open(path, framework="pt") as file:
        stored = {k: file.get_tensor(k) for k in file.keys()}
        header = file.metadata()
    if body is not None:
        header["sk_slim.model"] = json.dumps(body)
    stored = stored if tensors is None else tensors(stored)
    safetensors_torch.save_file(stored, path, metadata={**header, **metadata})


def _body(path):
    with safe_open(path, framework="pt") as file:
        return json.loads(file.metadata()["sk_slim.model"])


@pytest.fixture
def saved(tmp_path):
    X, y = make_friedman1(n_samples=60, random_state=0)
    path = tmp_path / "model.safetensors"
    sk_slim.save(_fit(SlimTrainRegressor(**TINY), X, y), path)
    return path


@pytest.mark.parametrize(
    "name, node, message",
    [
        ("_trainer_state", None, "class 'os.system' is not one sk_slim.load"),
        ("n_iter_", {"$type": "builtins.eval", "args": ["1"]}, "'builtins.eval' is"),
        ("_dtype", {"$type": "torch.dtype", "name": "__class__"}, "'__class__' is"),
    ],
    ids=["class", "type", "dtype-name"],
)
def test_a_type_outside_the_allowed_list_is_refused(saved, name, node, message):
    body = _body(saved)
    if node is None:
        body["attributes"][name]["class"] = "os.system"
    else:
        body["attributes"][name] = node
    _rewrite(saved, body=body)
    with pytest.raises(ValueError, match=message):
        sk_slim.load(saved)


@pytest.mark.parametrize("name", ["predict", "__class__", "__dict__", "alpha"])
def test_an_attribute_that_is_not_fitted_state_is_refused(saved, name):
    # A file could otherwise shadow a method (predict = 1) or an instance's
    # internals with a value of an allowed type.
    body = _body(saved)
    body["attributes"][name] = 1
    _rewrite(saved, body=body)
    with pytest.raises(ValueError, match="is not a fitted attribute"):
        sk_slim.load(saved)


def test_a_newer_format_version_is_refused(saved):
    _rewrite(saved, format_version="2")
    with pytest.raises(ValueError, match="format version 2, newer.*upgrade sk_slim"):
        sk_slim.load(saved)


def test_a_truncated_file_is_refused(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) - 100])
    with pytest.raises(ValueError, match="not a complete safetensors file"):
        sk_slim.load(saved)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: {**t, "module_.W": t["module_.W"][:-1]}, "shape"),
        (lambda t: {**t, "module_.b": t["module_.b"].float()}, "float32"),
        (lambda t: {k: v for k, v in t.items() if k != "module_.b"}, "missing"),
        (lambda t: {**t, "extra": torch.zeros(2)}, "does not name.*extra"),
    ],
    ids=["shape", "dtype", "missing", "extra"],
)
def test_a_damaged_tensor_is_refused(saved, change, message):
    _rewrite(saved, tensors=change)
    with pytest.raises(ValueError, match=message):
        sk_slim.load(saved)


def test_a_consistent_description_of_another_network_is_refused(saved):
    # The description and the tensor agree, the parameters build another net.
    def wider(tensors):
        return {**tensors, "module_.W": torch.zeros(9, 1, dtype=torch.float64)}

    body = _body(saved)
    body["attributes"]["module_"]["state"]["W"]["shape"] = [9, 1]
    _rewrite(saved, tensors=wider, body=body)
    with pytest.raises(ValueError, match="rebuilt network has"):
        sk_slim.load(saved)


def test_other_files_are_refused(saved, tmp_path):
    other = tmp_path / "other.safetensors"
    safetensors_torch.save_file({"w": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="not an sk_slim model"):
        sk_slim.load(other)
    body = _body(saved)
    body["class"] = "Pipeline"
    _rewrite(saved, body=body, **{"class": "Pipeline"})
    with pytest.raises(ValueError, match="'Pipeline' is not an sk_slim estimator"):
        sk_slim.load(saved)


def test_save_refuses_what_it_cannot_store_and_leaves_no_file(tmp_path):
    class MyRegressor(SlimTrainRegressor):
        pass

    path = tmp_path / "model.safetensors"
    with pytest.raises(TypeError, match="subclass"):
        sk_slim.save(MyRegressor(), path)
    model = SlimTrainRegressor()
    model.scratch_ = object()
    with pytest.raises(TypeError, match="cannot store 'scratch_'"):
        sk_slim.save(model, path)
    assert list(tmp_path.iterdir()) == []


def test_no_code_path_unpickles_or_loads_weights_unsafely():
    for path in PACKAGE.rglob("*.py"):
        assert "weights_only=False" not in path.read_text(), path
    # The loader's module imports no unpickler and calls no torch.load.
    source = "\n".join(p.read_text() for p in (PACKAGE / "persistence").glob("*.py"))
    tree = ast.parse(source)
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert not imported & {"pickle", "marshal", "dill", "joblib", "cloudpickle"}
    calls = {ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert not {"torch.load", "load_file"} & calls


# -------------------------------------------------------------- skorch bridge


def test_skorch_bridge_round_trip(tmp_path):
    pytest.importorskip("skorch")
    from sk_slim.skorch import SlimTrainNetRegressor

    X = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = np.sin(X[:, :2])

    def new_net():
        module = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
        return SlimTrainNetRegressor(
            module, optimizer=torch.optim.Adam, max_epochs=2, batch_size=16, verbose=0
        )

    net = new_net().fit(X, y)
    path = tmp_path / "net.safetensors"
    sk_slim.save(net, path)
    with pytest.raises(ValueError, match="pass a net built as the saved one"):
        sk_slim.load(path)
    template = new_net()
    restored = sk_slim.load(path, net=template)
    assert not getattr(template, "initialized_", False)  # cloned, not changed
    np.testing.assert_array_equal(restored.predict(X), net.predict(X))
    assert restored.history_ == net.history_
    assert restored.slimtik_.state.n_updates == net.slimtik_.state.n_updates
    # Optimizer moments and slimTik's memory came along: both go on alike.
    torch.manual_seed(0)
    net.partial_fit(X, y)
    torch.manual_seed(0)
    restored.partial_fit(X, y)
    np.testing.assert_array_equal(restored.predict(X), net.predict(X))


def test_a_file_from_before_step_norm_loads(tmp_path):
    # 0.1.0 wrote GNvproState without step_norm (added with the reused Kaufman
    # factor): such a file loads, with the fresh state's value.
    X, y = make_friedman1(n_samples=60, random_state=0)
    model = _fit(GNvproRegressor(**TINY), X, y)
    path = tmp_path / "model.safetensors"
    sk_slim.save(model, path)

    def drop_step_norm(node):
        if isinstance(node, dict):
            if node.get("class") == "sk_slim.training.GNvproState":
                assert node.pop("step_norm", None) is not None
                return 1
            return sum(drop_step_norm(v) for v in node.values())
        if isinstance(node, list):
            return sum(drop_step_norm(v) for v in node)
        return 0

    body = _body(path)
    assert drop_step_norm(body) == 1
    _rewrite(path, body=body)
    loaded = sk_slim.load(path)
    assert loaded._trainer_state.step_norm == 0.0
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
