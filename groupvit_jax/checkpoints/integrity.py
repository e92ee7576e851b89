"""Loaded checkpoints are what they claim, or loading fails naming the file.

Corruption inside a weights file often still decodes: a flipped block of bytes in a
.pth or an Orbax data file loads as NaN or arbitrary values. Every loader checks that
the weights are finite; our export also records a SHA-256 per array, checked on load.
"""
from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterable

import jax
import numpy as np


def parse_config(source, parse: Callable[[], Any]) -> Any:
    """`parse()` of a config document; a malformed one (a missing key, a value of the
    wrong type, an invalid field) is a ValueError naming `source`."""
    try:
        return parse()
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        if str(source) in str(e):
            raise
        raise ValueError(f"{source}: not a valid model config ({type(e).__name__}: {e}).") from e


def named_leaves(variables) -> Iterable[tuple[str, Any]]:
    """(path, array) of every leaf: "params['text']['token_embedding']['embedding']"."""
    for path, value in jax.tree_util.tree_flatten_with_path(variables)[0]:
        yield jax.tree_util.keystr(path), value


def check_finite(named_arrays: Iterable[tuple[str, Any]], source) -> None:
    """A ValueError naming `source` and the first array with a NaN or an infinity."""
    for name, value in named_arrays:
        bad = np.size(value) - np.count_nonzero(np.isfinite(np.asarray(value)))
        if bad:
            raise ValueError(f"{source}: {name} has {bad} non-finite values (NaN or inf) of "
                             f"{np.size(value)}: the weights are corrupted.")


def checksums(variables) -> dict[str, str]:
    """path -> SHA-256 of the array's bytes (C order)."""
    return {name: hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()
            for name, value in named_leaves(variables)}


def verify_checksums(variables, expected: dict[str, str], source) -> None:
    """A ValueError naming `source` and the first array whose bytes changed since
    `checksums` recorded `expected`."""
    got = checksums(variables)
    if set(got) != set(expected):
        raise ValueError(f"{source}: the arrays {sorted(set(got) ^ set(expected))[:5]} differ "
                         "from the ones whose checksums were recorded.")
    for name, digest in expected.items():
        if got[name] != digest:
            raise ValueError(f"{source}: {name} does not match its recorded SHA-256: the file "
                             "is corrupted or was changed after export; export or download "
                             "it again.")
