"""Inputs as users hold them -> the float matrix a network takes.

:class:`InputEncoder` is what every sk_slim estimator does to ``X`` before its
network sees it: numeric columns scaled, their missing values imputed with an
indicator column, categorical columns one-hot encoded. It follows
scikit-learn's transformers: ``SimpleImputer(add_indicator=True)``,
``StandardScaler`` / ``RobustScaler``, ``OneHotEncoder(handle_unknown='ignore',
max_categories=...)``, and ``categorical_features`` as in
``HistGradientBoostingRegressor``. Its fitted state is plain arrays rather than
those transformers, for three things they do not give: sample weights that act
as repeated rows (``SimpleImputer`` and ``RobustScaler`` take no weights), a
map that folds exactly into the exported torch module (:class:`InputTransform`),
and a
state ``sk_slim.save`` stores as data.
"""

from numbers import Integral

import narwhals.stable.v2 as nw
import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_categorical_features,
    _check_feature_names_in,
    _check_sample_weight,
    check_array,
    check_is_fitted,
    validate_data,
)
from torch import nn

__all__ = ["InputEncoder", "InputTransform"]

SCALINGS = ("standard", "robust", "robust-clip")
# RealMLP-TD's smooth clipping bound (Holzmueller et al. 2024, sec. 3):
# x / sqrt(1 + (x / 3)^2) keeps the bulk and squashes outliers to (-3, 3).
_CLIP = 3.0


class InputEncoder(TransformerMixin, BaseEstimator):
    """Scale numeric columns, impute missing values, one-hot encode categories.

    The output has, in this order: the numeric columns, scaled; one indicator
    column per numeric column with missing values at fit (as
    ``SimpleImputer(add_indicator=True)``); one-hot blocks of the categorical
    columns. A missing numeric value becomes the column's center (0 after
    scaling; the median without scaling), also in columns that had none at fit.

    Parameters
    ----------
    scaling : {'standard', 'robust', 'robust-clip'} or None, default='robust-clip'
        Numeric columns: ``'standard'`` subtracts the mean and divides by the
        standard deviation (``StandardScaler``); ``'robust'`` subtracts the
        median and divides by the interquartile range (``RobustScaler``), or
        by half the range where the quartiles coincide; ``'robust-clip'``
        then clips smoothly, ``x / sqrt(1 + (x / 3)^2)``, the robust scaling
        of RealMLP-TD (Holzmueller et al., "Better by default", 2024); None
        leaves the values as they are (missing values still imputed, by the
        median). Statistics are weighted by ``sample_weight``.
    categorical_features : array-like of {bool, int, str} or 'from_dtype' or None, \
            default='from_dtype'
        The categorical columns, as in ``HistGradientBoostingRegressor``: a
        boolean mask, indices, or names; ``'from_dtype'``: the dataframe
        columns of dtype ``category`` (pandas) or ``Categorical``/``Enum``
        (polars). String (``object``) columns are not categorical by dtype:
        declare them, or convert them to ``category``.
    max_categories : int, default=8
        Most one-hot columns per categorical column (as ``OneHotEncoder``'s
        ``max_categories``): beyond it the most frequent ``max_categories - 1``
        categories keep their own column and the rest share one. Missing
        values at fit get a column of their own besides; a category unseen at
        fit (or a missing value in a column that had none) encodes as zeros.

    Attributes
    ----------
    n_features_in_ : int
        Number of columns seen in fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Names of the columns seen in fit, when they are all strings.
    is_categorical_ : ndarray of shape (`n_features_in_`,), dtype=bool
        Which columns are encoded as categories.
    fill_ : ndarray of shape (n_numeric,)
        What replaces a missing value of each numeric column: its mean
        (``'standard'``) or median.
    center_ : ndarray of shape (n_numeric,)
        What each numeric column's values have subtracted.
    scale_ : ndarray of shape (n_numeric,)
        What each centered numeric column is divided by.
    missing_indicator_ : ndarray of shape (n_numeric,), dtype=bool
        The numeric columns with an indicator column.
    categories_ : list of ndarray
        Per categorical column, the categories seen at fit, sorted.
    category_columns_ : list of ndarray of int
        Per categorical column, each category's one-hot column (the shared
        column of the infrequent categories included).
    missing_category_ : ndarray of shape (n_categorical,), dtype=bool
        The categorical columns with a column for missing values.

    See Also
    --------
    sklearn.compose.ColumnTransformer : The general tool, for any other encoding.
    """

    _parameter_constraints = {
        "scaling": [StrOptions(set(SCALINGS)), None],
        "categorical_features": ["array-like", StrOptions({"from_dtype"}), None],
        "max_categories": [Interval(Integral, 2, None, closed="left")],
    }

    def __init__(
        self,
        *,
        scaling="robust-clip",
        categorical_features="from_dtype",
        max_categories=8,
    ):
        self.scaling = scaling
        self.categorical_features = categorical_features
        self.max_categories = max_categories

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Learn the columns' scaling, missing values and categories.

        Parameters
        ----------
        X : {array-like, dataframe} of shape (n_samples, n_features)
            The inputs as held: numeric, categorical and missing values.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the statistics; an integer weight counts as that many
            repeated rows, a zero weight as no row.

        Returns
        -------
        self : InputEncoder
            Fitted.
        """
        X = as_table(X)
        validate_data(self, X, reset=True, skip_check_array=True)
        is_categorical = _check_categorical_features(X, self.categorical_features)
        self.is_categorical_ = (
            np.zeros(self.n_features_in_, dtype=bool)
            if is_categorical is None
            else is_categorical
        )
        columns = self._columns(X)
        weight = _check_sample_weight(
            sample_weight, np.empty((len(columns[0]), 0)), ensure_non_negative=True
        )
        weighted = weight > 0
        if not weighted.any():
            raise ValueError("The sample weights are all zero.")
        rows = slice(None) if weighted.all() else weighted  # all: views, no copies
        numeric, categorical = self._split([c[rows] for c in columns])
        self._fit_numeric(numeric, weight[rows])
        self._fit_categorical(categorical, weight[rows])
        return self

    def transform(self, X):
        """Encode ``X``: the matrix the network takes.

        Parameters
        ----------
        X : {array-like, dataframe} of shape (n_samples, n_features)
            With the columns seen in fit.

        Returns
        -------
        X_out : ndarray of shape (n_samples, n_features_out)
            In float32 when every numeric column is float32, else float64.
        """
        check_is_fitted(self)
        X = as_table(X)
        validate_data(self, X, reset=False, skip_check_array=True)
        return self._encode(X)

    def _encode(self, X):
        """:meth:`transform` without the checks of names and column counts."""
        columns = self._columns(X)
        numeric, categorical = self._split(columns)
        blocks = []
        if numeric:
            values, missing = self._scaled(np.column_stack(numeric))
            blocks += [values, missing[:, self.missing_indicator_]]
        for k, column in enumerate(categorical):
            blocks.append(self._one_hot(k, self._codes(k, column)))
        dtype = np.float64
        if numeric and all(c.dtype == np.float32 for c in numeric):
            dtype = np.float32
        blocks = [b for b in blocks if b.shape[1]]
        if len(blocks) == 1 and blocks[0].dtype == dtype:  # no copy of many rows
            return np.asarray(blocks[0]).reshape(len(columns[0]), -1)
        out = np.hstack([b.astype(dtype, copy=False) for b in blocks])
        return out.reshape(len(columns[0]), -1)

    def _scaled(self, values):
        """Imputed and scaled numeric columns (in place: no copies), and the NaN."""
        missing = np.isnan(values)
        if values.dtype != np.float64:  # float32 columns are scaled in float64
            values = values.astype(np.float64)
        np.copyto(values, self.fill_, where=missing)
        values -= self.center_
        values /= self.scale_
        if self.scaling == "robust-clip":  # by blocks: one block's temporary
            for block in np.array_split(values, -(-len(values) // 65536) or 1):
                shrink = block / _CLIP
                shrink *= shrink
                shrink += 1
                block /= np.sqrt(shrink, out=shrink)
        return values, missing

    def to_codes(self, X):
        """Give ``X`` as numbers: categorical columns as their category's code.

        The input of the estimators' ``to_torch()`` module: numeric columns as
        they are, a category as its position in ``categories_`` (``-1`` when
        unseen at fit), missing values as NaN.

        Parameters
        ----------
        X : {array-like, dataframe} of shape (n_samples, n_features)
            With the columns seen in fit.

        Returns
        -------
        X_codes : ndarray of shape (n_samples, `n_features_in_`), dtype=float64
            The input of the estimators' ``to_torch()`` module.
        """
        check_is_fitted(self)
        X = as_table(X)
        validate_data(self, X, reset=False, skip_check_array=True)
        columns = self._columns(X)
        out = np.empty((len(columns[0]), len(columns)))
        k = 0
        for j, (column, cat) in enumerate(
            zip(columns, self.is_categorical_, strict=True)
        ):
            if cat:
                codes = self._codes(k, column).astype(np.float64)
                out[:, j] = np.where(codes == -2, np.nan, codes)
                k += 1
            else:
                out[:, j] = column
        return out

    def _torch_arrays(self):
        """What :class:`InputTransform` is built from, as numpy arrays."""
        numeric = np.flatnonzero(~self.is_categorical_)
        onehot = []
        for k, categories in enumerate(self.categories_):
            # The categories' columns; the missing-value column, if any, follows.
            n_columns = int(self.category_columns_[k].max()) + 1
            matrix = np.zeros((len(categories), n_columns))
            matrix[np.arange(len(categories)), self.category_columns_[k]] = 1
            onehot.append(matrix)
        return {
            "numeric": numeric,
            "fill": self.fill_,
            "center": self.center_,
            "scale": self.scale_,
            "indicator": numeric[self.missing_indicator_],
            "categorical": np.flatnonzero(self.is_categorical_),
            "onehot": onehot,
            "missing_category": self.missing_category_,
            "clip": self.scaling == "robust-clip",
        }

    def get_feature_names_out(self, input_features=None):
        """Get the names of the output columns.

        Parameters
        ----------
        input_features : array-like of str, default=None
            The input columns' names; ``feature_names_in_`` (or ``x0``,
            ``x1``, ...) by default.

        Returns
        -------
        feature_names_out : ndarray of str objects
            One name per output column.
        """
        check_is_fitted(self)
        names = _check_feature_names_in(self, input_features)
        numeric = names[~self.is_categorical_]
        out = list(numeric) + [
            f"missingindicator_{n}" for n in numeric[self.missing_indicator_]
        ]
        for k, name in enumerate(names[self.is_categorical_]):
            n_columns = self._n_category_columns(k)
            labels = [None] * n_columns
            for category, column in zip(
                self.categories_[k], self.category_columns_[k], strict=True
            ):
                labels[column] = (
                    str(category) if labels[column] is None else "infrequent"
                )
            if self.missing_category_[k]:
                labels[-1] = "nan"
            out += [f"{name}_{label}" for label in labels]
        return np.asarray(out, dtype=object)

    # ------------------------------------------------------------------ fitting

    def _fit_numeric(self, columns, weight):
        fills, centers, scales, indicators = [], [], [], []
        for j, values in zip(
            np.flatnonzero(~self.is_categorical_), columns, strict=True
        ):
            observed = ~np.isnan(values)
            if not observed.any():
                raise ValueError(
                    f"Column {self._name(j)} has only missing values: nothing to "
                    "scale or impute it from. Drop it."
                )
            kept = slice(None) if observed.all() else observed  # a view if complete
            fill, center, scale = _center_and_scale(
                values[kept], weight[kept], self.scaling
            )
            fills.append(fill)
            centers.append(center)
            scales.append(scale)
            indicators.append(not observed.all())
        self.fill_ = np.asarray(fills, dtype=np.float64)
        self.center_ = np.asarray(centers, dtype=np.float64)
        self.scale_ = np.asarray(scales, dtype=np.float64)
        self.missing_indicator_ = np.asarray(indicators, dtype=bool)

    def _fit_categorical(self, columns, weight):
        self.categories_, self.category_columns_, missing_category = [], [], []
        for j, values in zip(
            np.flatnonzero(self.is_categorical_), columns, strict=True
        ):
            missing = _is_missing(values)
            if missing.all():
                raise ValueError(
                    f"Categorical column {self._name(j)} has only missing values: "
                    "no category to encode. Drop it."
                )
            try:
                categories, codes = np.unique(values[~missing], return_inverse=True)
            except TypeError as error:
                raise ValueError(
                    f"Categorical column {self._name(j)} mixes types (e.g. strings "
                    "and numbers); give it one type."
                ) from error
            counts = np.bincount(
                codes, weights=weight[~missing], minlength=len(categories)
            )
            # The most frequent keep a column each (ties: in sorted order).
            n_kept = len(categories)
            if n_kept > self.max_categories:
                n_kept = self.max_categories - 1
            kept = np.sort(np.argsort(-counts, kind="stable")[:n_kept])
            columns_of = np.full(len(categories), n_kept)  # the shared column
            columns_of[kept] = np.arange(n_kept)
            self.categories_.append(categories)
            self.category_columns_.append(columns_of)
            missing_category.append(missing.any())
        self.missing_category_ = np.asarray(missing_category, dtype=bool)

    # --------------------------------------------------------------- encoding

    def _columns(self, X):
        """The columns of ``X`` (from :func:`as_table`): numeric ones as float
        arrays (NaN for missing), categorical ones as they are."""
        if nw.dependencies.is_into_dataframe(X):
            frame = nw.from_native(X, eager_only=True)
            raw = [frame.get_column(name).to_numpy() for name in frame.columns]
        else:
            raw = list(X.T)
        return [
            column if cat else self._numeric(j, column)
            for j, (column, cat) in enumerate(
                zip(raw, self.is_categorical_, strict=True)
            )
        ]

    def _numeric(self, j, column):
        if column.dtype.kind == "b":
            column = column.astype(np.float64)
        elif column.dtype.kind not in "iuf":
            if column.dtype.kind == "O":
                # None is missing, as in a dataframe's object column.
                column = np.where(_is_missing(column), np.nan, column)
            try:
                column = column.astype(np.float64)
            except ValueError as error:
                raise ValueError(
                    f"Column {self._name(j)} is not numeric ({error}). Declare it in "
                    "categorical_features, or give it the 'category' dtype."
                ) from error
        if column.dtype.kind != "f":
            column = column.astype(np.float64)
        if np.isinf(column).any():
            raise ValueError(
                f"Input X contains infinity or a value too large for "
                f"{column.dtype!r} (column {self._name(j)})."
            )
        return column

    def _codes(self, k, column):
        """Category codes: the index in ``categories_[k]``; -1 unseen, -2 missing."""
        missing = _is_missing(column)
        categories = self.categories_[k]
        codes = np.full(len(column), -1, dtype=np.int64)
        present = column[~missing]
        if len(present):
            try:
                index = np.searchsorted(categories, present)
            except TypeError as error:
                j = np.flatnonzero(self.is_categorical_)[k]
                raise ValueError(
                    f"Categorical column {self._name(j)} holds values of another "
                    "type than at fit."
                ) from error
            index = np.minimum(index, len(categories) - 1)
            found = categories[index] == present
            codes[~missing] = np.where(found, index, -1)
        codes[missing] = -2
        return codes

    def _one_hot(self, k, codes):
        n_columns = self._n_category_columns(k)
        out = np.zeros((len(codes), n_columns))
        seen = codes >= 0
        out[np.flatnonzero(seen), self.category_columns_[k][codes[seen]]] = 1.0
        if self.missing_category_[k]:
            out[codes == -2, -1] = 1.0
        return out

    def _split(self, columns):
        """``columns`` as (the numeric ones, the categorical ones), in order."""
        flags = zip(columns, self.is_categorical_, strict=True)
        numeric, categorical = [], []
        for column, is_categorical in flags:
            (categorical if is_categorical else numeric).append(column)
        return numeric, categorical

    def _n_category_columns(self, k):
        n = int(self.category_columns_[k].max()) + 1
        return n + int(self.missing_category_[k])

    def _name(self, j):
        names = getattr(self, "feature_names_in_", None)
        return repr(names[j]) if names is not None else str(j)

    @property
    def _n_features_out(self):
        n_categorical = sum(
            self._n_category_columns(k) for k in range(len(self.categories_))
        )
        return len(self.center_) + int(self.missing_indicator_.sum()) + n_categorical

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class InputTransform(nn.Module):
    """A fitted :class:`InputEncoder` in torch, for the exported network.

    Takes :meth:`InputEncoder.to_codes`'s output (numeric columns raw, category
    codes, NaN for missing) and returns :meth:`InputEncoder.transform`'s.
    Exportable with ``torch.export`` and to ONNX. The estimators' ``to_torch``
    builds it from their ``input_encoder_``.

    Parameters
    ----------
    numeric : Tensor of shape (n_numeric,)
        Indices of the numeric columns.
    fill, center, scale : Tensor of shape (n_numeric,)
        Each numeric column's imputed value, center and scale.
    indicator : Tensor of shape (n_indicators,)
        Indices of the columns with a missing-value indicator.
    clip : bool
        Clip smoothly after scaling (``scaling='robust-clip'``).
    categorical : Tensor of shape (n_categorical,)
        Indices of the categorical columns.
    onehot : list of Tensor of shape (n_categories, n_columns)
        Per categorical column, row ``c``: the one-hot columns of code ``c``.
    missing_category : Tensor of shape (n_categorical,), dtype=bool
        The categorical columns followed by a "missing" column.
    """

    def __init__(
        self,
        numeric,
        fill,
        center,
        scale,
        indicator,
        clip,
        categorical,
        onehot,
        missing_category,
    ):
        super().__init__()
        self.register_buffer("numeric", numeric)
        self.register_buffer("fill", fill)
        self.register_buffer("center", center)
        self.register_buffer("scale", scale)
        self.register_buffer("indicator", indicator)
        self.clip = bool(clip)
        self.categorical = [int(j) for j in categorical]
        self.missing_category = [bool(m) for m in missing_category]
        for k, matrix in enumerate(onehot):
            self.register_buffer(f"onehot{k}", matrix)

    def forward(self, x):
        """Encode ``x``.

        Parameters
        ----------
        x : Tensor of shape (n, n_features_in)
            Numeric columns raw, categorical ones as codes, NaN for missing.

        Returns
        -------
        Tensor of shape (n, n_features_out)
            What :meth:`InputEncoder.transform` returns.
        """
        blocks = []
        if len(self.fill):
            values = x[:, self.numeric]
            missing = torch.isnan(values)
            values = torch.where(missing, self.fill, values)
            values = (values - self.center) / self.scale
            if self.clip:
                values = values / torch.sqrt(1 + (values / _CLIP) ** 2)
            blocks += [values, torch.isnan(x[:, self.indicator]).to(x.dtype)]
        for k, j in enumerate(self.categorical):
            code = x[:, j : j + 1]
            onehot = getattr(self, f"onehot{k}")
            levels = torch.arange(len(onehot), dtype=x.dtype, device=x.device)
            block = (code == levels).to(x.dtype) @ onehot
            if self.missing_category[k]:
                block = torch.cat([block, torch.isnan(code).to(x.dtype)], dim=1)
            blocks.append(block)
        return torch.cat(blocks, dim=1)


def as_table(X):
    """``X`` checked as a table: a dataframe as it is, anything else as a 2-D
    array (of any dtype) with scikit-learn's checks and messages.

    Parameters
    ----------
    X : {array-like, dataframe} of shape (n_samples, n_features)
        Inputs.

    Returns
    -------
    X : dataframe or ndarray of shape (n_samples, n_features)
        At least one row and one column.
    """
    if nw.dependencies.is_into_dataframe(X):
        frame = nw.from_native(X, eager_only=True)
        n_samples, n_features = frame.shape
        if n_samples == 0 or n_features == 0:
            what = "sample" if n_samples == 0 else "feature"
            count = n_samples if n_samples == 0 else n_features
            raise ValueError(
                f"Found array with {count} {what}(s) (shape={frame.shape}) while a "
                "minimum of 1 is required."
            )
        return X
    return check_array(X, dtype=None, ensure_all_finite=False)


def _center_and_scale(values, weight, scaling):
    """``(fill, center, scale)``: weighted statistics of a column's observed values."""
    if scaling == "standard":
        center = np.average(values, weights=weight)
        scale = np.sqrt(np.average((values - center) ** 2, weights=weight))
        return center, center, (scale if scale > 0 else 1.0)
    # Quantiles of the weighted rows; 'inverted_cdf' counts a weight as repeats.
    q = np.quantile(values, [0.25, 0.5, 0.75], weights=weight, method="inverted_cdf")
    if scaling is None:
        return q[1], 0.0, 1.0
    spread = q[2] - q[0]
    if spread <= 0:  # e.g. a mostly constant column: half its range
        spread = (values.max() - values.min()) / 2
    return q[1], q[1], (spread if spread > 0 else 1.0)


def _is_missing(values):
    """None or NaN, in an array of any dtype."""
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind != "O":
        return np.zeros(len(values), dtype=bool)
    missing = (v is None or (isinstance(v, float) and v != v) for v in values)
    return np.fromiter(missing, dtype=bool, count=len(values))
