"""From per-stage assignment maps to per-pixel group masks."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def group_masks(soft_maps, grid_hw: tuple[int, int], out_hw: tuple[int, int]) -> jax.Array:
    """Soft maps ([B, S_i, N_{i-1}] per stage) -> group probabilities [B, S, H, W].

    Chains the stages (image token -> stage-1 group -> ... -> final segment) by
    multiplying their soft maps, then upsamples bilinearly from the patch grid
    (half-pixel centres, as PyTorch's align_corners=False).
    """
    chain = soft_maps[0]
    for later in soft_maps[1:]:
        chain = jnp.einsum("bsg,bgn->bsn", later, chain)
    b, s, _ = chain.shape
    grid = chain.reshape(b, s, *grid_hw)
    return jax.image.resize(grid, (b, s, *out_hw), method="bilinear", antialias=False)


def group_labels(soft_maps, grid_hw, out_hw) -> jax.Array:
    """The most likely final group of every pixel, int32 [B, H, W]."""
    return jnp.argmax(group_masks(soft_maps, grid_hw, out_hw), axis=1).astype(jnp.int32)
