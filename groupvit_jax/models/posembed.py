"""Resizing GroupViT's learned patch position embedding to another grid.

The image tower learns a position embedding for a 14x14 patch grid
([1, 196, C], row-major). The released checkpoints were evaluated at other
resolutions by resizing that grid with PyTorch's
``F.interpolate(mode="bicubic", align_corners=False)``, so reproducing their
numbers needs the same resampling. Those semantics are: Keys cubic convolution
with A = -0.75, source coordinate ``(dst + 0.5) * in / out - 0.5`` (not clamped
at 0), four taps at ``floor(src) - 1 .. floor(src) + 2`` whose indices are
clamped to ``[0, in - 1]`` (border replication, weights not renormalised).

``jax.image.resize(method="bicubic")`` is not a substitute: it uses A = -0.5
and renormalises the weights at the borders, which differs by far more than
float32 rounding.

The resize is separable, so it is two small matmuls with constant matrices
built in numpy at trace time; it is jit-friendly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

_A = -0.75  # PyTorch's cubic convolution coefficient.


def _cubic_weight(x: float) -> float:
    """Keys cubic convolution kernel with A = -0.75, evaluated at distance x."""
    x = abs(x)
    if x <= 1.0:
        return ((_A + 2.0) * x - (_A + 3.0)) * x * x + 1.0
    if x < 2.0:
        return ((_A * x - 5.0 * _A) * x + 8.0 * _A) * x - 4.0 * _A
    return 0.0


def _check_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return int(value)


def bicubic_resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Float64 [out_size, in_size] matrix of 1-D bicubic resampling weights.

    Row ``o`` holds the weights of output ``o`` over the inputs; taps that
    fall outside ``[0, in_size - 1]`` are clamped to the border and their
    weights accumulate there. Each row sums to 1.
    """
    in_size = _check_size("in_size", in_size)
    out_size = _check_size("out_size", out_size)
    scale = in_size / out_size
    m = np.zeros((out_size, in_size), dtype=np.float64)
    for o in range(out_size):
        src = (o + 0.5) * scale - 0.5
        base = math.floor(src)
        t = src - base
        for k in range(-1, 3):
            idx = min(max(base + k, 0), in_size - 1)
            m[o, idx] += _cubic_weight(k - t)
    return m


def _check_grid(name: str, grid) -> tuple[int, int]:
    try:
        h, w = grid
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (h, w), got {grid!r}") from None
    return _check_size(f"{name}[0]", h), _check_size(f"{name}[1]", w)


def resize_pos_embed(
    pos_embed: jax.Array,
    src_grid: tuple[int, int],
    dst_grid: tuple[int, int],
) -> jax.Array:
    """Resize a [B, src_h*src_w, C] position embedding to [B, dst_h*dst_w, C].

    Matches ``F.interpolate(mode="bicubic", align_corners=False)`` applied to
    the [B, C, src_h, src_w] grid. Returns the input unchanged when the grids
    are equal. Computed in (at least) float32 with HIGHEST matmul precision
    and returned in ``pos_embed``'s dtype.
    """
    src_h, src_w = _check_grid("src_grid", src_grid)
    dst_h, dst_w = _check_grid("dst_grid", dst_grid)
    if pos_embed.ndim != 3:
        raise ValueError(
            f"pos_embed must have rank 3 [B, N, C], got shape {tuple(pos_embed.shape)}"
        )
    b, n, c = pos_embed.shape
    if n != src_h * src_w:
        raise ValueError(
            f"pos_embed has {n} tokens but src_grid {src_h}x{src_w} "
            f"needs {src_h * src_w}"
        )
    if (src_h, src_w) == (dst_h, dst_w):
        return pos_embed

    compute_dtype = jnp.promote_types(pos_embed.dtype, jnp.float32)
    mh = jnp.asarray(bicubic_resize_matrix(src_h, dst_h), dtype=compute_dtype)
    mw = jnp.asarray(bicubic_resize_matrix(src_w, dst_w), dtype=compute_dtype)
    grid = pos_embed.astype(compute_dtype).reshape(b, src_h, src_w, c)
    hi = jax.lax.Precision.HIGHEST
    grid = jnp.einsum("oh,bhwc->bowc", mh, grid, precision=hi)
    grid = jnp.einsum("pw,bowc->bopc", mw, grid, precision=hi)
    return grid.reshape(b, dst_h * dst_w, c).astype(pos_embed.dtype)
