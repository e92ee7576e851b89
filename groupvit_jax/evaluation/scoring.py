"""Per-window class scores from one image-tower pass (the released GroupViTSegInference).

For a window, each final group gets a class-score row and a background flag; a pixel
takes the row of the group it belongs to most. Everything here is jnp on a batch of
windows, so it runs inside the jitted window pass; tests feed hand-built outputs.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from groupvit_jax.evaluation.resize import upsample_bilinear
from groupvit_jax.models.model import l2_normalize

TOP_CLASSES = 5  # the image-level restriction of the released protocol


def group_probabilities(soft_maps, grid_hw: tuple[int, int], window_hw: tuple[int, int]):
    """Soft maps ([B, S_i, N_{i-1}] per stage) -> [B, h, w, S] final-group probabilities.

    Token -> group chains are products of the stages' SOFT maps ([N, 64] @ [64, 8]),
    upsampled bilinearly from the patch grid to the window. Without stages (a plain ViT)
    every patch is its own segment: the identity, [1, h, w, N], shared by all windows.
    """
    if not soft_maps:
        chain = jnp.eye(grid_hw[0] * grid_hw[1], dtype=jnp.float32)[None]
    else:
        chain = jnp.swapaxes(soft_maps[0], 1, 2)
    for later in soft_maps[1:]:
        chain = jnp.einsum("bng,bsg->bns", chain, later)
    grid = chain.reshape(chain.shape[0], *grid_hw, chain.shape[-1])
    return upsample_bilinear(grid, window_hw)


def group_class_scores(segment_embeds, image_embeds, class_embeds, logit_scale):
    """[B, S, C]: softmax over classes of scale * cos(segment, class), restricted to the
    image's top-5 classes (softmax of scale * cos(image, class)) and renormalised, times
    the unrestricted softmax.

    `class_embeds` [C, D] are already L2-normalised; the model outputs are not.
    """
    logits = jnp.einsum("bsd,cd->bsc", l2_normalize(segment_embeds), class_embeds) * logit_scale
    image_probs = jax.nn.softmax(l2_normalize(image_embeds) @ class_embeds.T * logit_scale, -1)
    _, top = jax.lax.top_k(image_probs, min(TOP_CLASSES, class_embeds.shape[0]))
    kept = jnp.zeros(image_probs.shape, bool).at[jnp.arange(len(top))[:, None], top].set(True)
    restricted = jax.nn.softmax(jnp.where(kept[:, None, :], logits, -jnp.inf), -1)
    return restricted * jax.nn.softmax(logits, -1)


def background_flags(scores, bg_thresh):
    """[B, S, C] scores -> [B, S] float 1.0 where a group's best score is below
    min(bg_thresh, the window's best score over all groups, pixels or not)."""
    thresh = jnp.minimum(jnp.float32(bg_thresh), scores.max(axis=(1, 2)))
    return (scores.max(-1) < thresh[:, None]).astype(jnp.float32)


def group_tables(scores, bg_thresh, with_background: bool):
    """[B, S, K] per-group score rows: [background flag, classes...] or just classes."""
    if not with_background:
        return scores
    return jnp.concatenate([background_flags(scores, bg_thresh)[..., None], scores], -1)


def score_windows(outputs: dict, class_embeds, logit_scale, grid_hw, window_hw,
                  bg_thresh, with_background: bool):
    """Image-tower outputs for a batch of windows -> (pixel groups int32 [B, h, w],
    group tables [B, S, K]); the window's score map is tables[b][groups[b]]."""
    probs = group_probabilities(outputs["soft_maps"], grid_hw, window_hw)
    scores = group_class_scores(outputs["segment_embeds"], outputs["image_embeds"],
                                class_embeds, logit_scale)
    groups = jnp.argmax(probs, -1).astype(jnp.int32)
    groups = jnp.broadcast_to(groups, (scores.shape[0], *groups.shape[1:]))  # a ViT's: [1, h, w]
    return groups, group_tables(scores, bg_thresh, with_background)
