"""How pixels enter the model: RGB, ImageNet statistics on the 0-255 scale, as mmcv.

Every released GroupViT (NVlabs, Hugging Face) was trained on images normalised this
way, so the statistics belong to the model, not to one evaluation.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

# mmseg's img_norm_cfg (RGB order, 0-255 scale): ImageNet's statistics.
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], np.float32)
# mmcv multiplies by the reciprocal of the std (computed in float64, applied in float32).
PIXEL_INV_STD = (1.0 / np.array([58.395, 57.12, 57.375], np.float64)).astype(np.float32)


def normalize_pixels(images):
    """uint8 (any leading shape, RGB last) -> float32 ImageNet-normalised, as mmcv."""
    return (jnp.asarray(images).astype(jnp.float32) - PIXEL_MEAN) * PIXEL_INV_STD
