"""K-means segments: the paper's "ViT + k-means" baseline, for any model.

The tower's final segment tokens (a ViT's patch tokens, a GroupViT's final groups) are
clustered per window; the one-hot assignment becomes one more stage of the soft-map
chain and each cluster's mean token is projected as its segment embedding. All jnp with
a fixed number of iterations and a deterministic start, so it runs inside the jitted
window pass and gives the same segments on every run.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

ITERATIONS = 20  # Lloyd steps, fixed: no data-dependent loop inside jit


def _sq_distances(x, centres):
    """[N, C], [K, C] -> [N, K] squared Euclidean distances, at full float32 precision
    (bfloat16 matmuls would reorder near ties)."""
    cross = jnp.einsum("nc,kc->nk", x, centres, precision=jax.lax.Precision.HIGHEST)
    return (x * x).sum(-1)[:, None] - 2 * cross + (centres * centres).sum(-1)[None]


def farthest_point_init(x, k: int):
    """[N, C] -> [k, C] starting centres: the token nearest the mean, then repeatedly the
    token farthest from all centres so far. With fewer than k distinct tokens the extra
    centres repeat one; their clusters stay empty (assignment ties go to the first)."""
    first = jnp.argmin(_sq_distances(x, x.mean(0, keepdims=True))[:, 0])
    centres = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(x[first])
    nearest = _sq_distances(x, x[first][None])[:, 0]

    def add(i, carry):
        centres, nearest = carry
        pick = jnp.argmax(nearest)
        nearest = jnp.minimum(nearest, _sq_distances(x, x[pick][None])[:, 0])
        return centres.at[i].set(x[pick]), nearest
    return jax.lax.fori_loop(1, k, add, (centres, nearest))[0]


def _assign(x, centres):
    """One Lloyd step: (one-hot [k, N] of each token's nearest centre, cluster means
    [k, C]); an empty cluster keeps its centre, so nothing divides by zero."""
    onehot = jax.nn.one_hot(jnp.argmin(_sq_distances(x, centres), -1), len(centres),
                            dtype=x.dtype).T
    counts = onehot.sum(-1, keepdims=True)
    sums = jnp.einsum("kn,nc->kc", onehot, x, precision=jax.lax.Precision.HIGHEST)
    return onehot, jnp.where(counts > 0, sums / jnp.maximum(counts, 1), centres)


def kmeans(tokens, k: int, iterations: int = ITERATIONS):
    """tokens [B, N, C] -> (assignment one-hot [B, k, N], cluster means [B, k, C]), each
    window clustered on its own."""
    if k < 1:
        raise ValueError(f"k-means needs k >= 1 clusters, got k={k}.")

    def one(x):
        x = x.astype(jnp.float32)
        centres = jax.lax.fori_loop(0, iterations, lambda _, c: _assign(x, c)[1],
                                    farthest_point_init(x, k))
        return _assign(x, centres)
    return jax.vmap(one)(tokens)


def kmeans_segments(outputs: dict, k: int, embed_segments: Callable) -> dict:
    """encode_image outputs -> the same with k-means segments: the assignment appended
    to soft_maps ([B, k, S] from the S segment tokens) and segment_embeds the projected
    cluster means (`embed_segments`: [B, k, C] tokens -> [B, k, D])."""
    assignment, means = kmeans(outputs["segment_tokens"], k)
    return {**outputs, "soft_maps": [*outputs["soft_maps"], assignment],
            "segment_embeds": embed_segments(means)}
