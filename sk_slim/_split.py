"""The validation split of fit's rows, without a second copy of the inputs.

``train_test_split`` copies every array it splits. The encoded inputs are the
largest of them and belong to ``fit`` (the encoding made them), so they are
split in place instead: their rows are reordered to the training rows, then the
validation rows, in exactly the order ``train_test_split`` gives, and the two
parts are views. On many rows this halves the memory of the split.
"""

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import _safe_indexing

__all__ = []

# Rows moved per step of a permutation cycle: the memory the reordering needs.
_MOVE_ROWS = 16384


def split_in_place(X, *arrays, test_size, random_state, stratify=None):
    """``train_test_split(X, *arrays, ...)``, with ``X`` reordered in place.

    Returns ``X_train, X_test, a_train, a_test, ...`` equal to those of
    ``train_test_split`` with the same arguments; ``X_train`` and ``X_test``
    are views of ``X``, whose rows it permutes. ``X`` must be writeable, owned
    by the caller.
    """
    train, test = train_test_split(
        np.arange(len(X)),
        test_size=test_size,
        random_state=random_state,
        stratify=stratify,
    )
    n_train, order = len(train), np.concatenate([train, test])
    train, test = order[:n_train], order[n_train:]  # views: one index array
    permute_rows_(X, order)
    split = [X[:n_train], X[n_train:]]
    for array in arrays:
        split += [_safe_indexing(array, train), _safe_indexing(array, test)]
    return split


def permute_rows_(X, order):
    """Reorder the rows of ``X`` in place, so that row ``i`` is the old row
    ``order[i]``: one cycle of the permutation at a time, ``_MOVE_ROWS``
    rows per move, so that no copy of all rows is made."""
    # A Python loop walks the cycles: a memoryview reads Python ints from the
    # array without a list of them (tolist: ~36 bytes a row).
    order = memoryview(np.ascontiguousarray(order, dtype=np.int64))
    seen = bytearray(len(order))
    for start, successor in enumerate(order):
        if seen[start] or successor == start:
            continue
        # Along a cycle start -> order[start] -> ..., each row takes its
        # successor's; the last takes the first's, kept aside.
        first = X[start].copy()
        positions = [start]
        while True:
            successor = order[positions[-1]]
            if successor != start:
                seen[successor] = 1
                positions.append(successor)
            if successor == start or len(positions) > _MOVE_ROWS:
                X[positions[:-1]] = X[positions[1:]]
                if successor == start:
                    X[positions[-1]] = first
                    break
                positions = positions[-1:]  # its row is not yet moved
    return X
