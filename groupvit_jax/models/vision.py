"""The GroupViT image tower: patch embedding, grouping stages, final segment tokens."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from groupvit_jax.models.config import VisionConfig
from groupvit_jax.models.grouping import GroupingBlock
from groupvit_jax.models.layers import LayerNorm, TokenMlp, block_class
from groupvit_jax.models.posembed import resize_pos_embed


def check_images(images, patch_size: int) -> None:
    """Raises a ValueError naming what is wrong with an image batch."""
    if images.ndim != 4:
        raise ValueError(f"images must be [B, H, W, 3] (channels last), got shape {images.shape}.")
    if images.shape[-1] != 3:
        raise ValueError(f"images must have 3 channels in the last axis, got shape {images.shape}.")
    h, w = images.shape[1:3]
    if h % patch_size or w % patch_size or h == 0 or w == 0:
        raise ValueError(f"image size {h}x{w} is not a positive multiple of the patch size "
                         f"{patch_size}.")


class GroupingStage(nn.Module):
    """Transformer blocks over [image tokens; group tokens], then a grouping block.

    The last stage has no group tokens and only runs its blocks.
    """
    config: VisionConfig
    stage: int
    drop_path_rates: tuple[float, ...]
    dtype: jnp.dtype = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, x, prev_groups, train: bool):
        cfg, s = self.config, self.stage
        num_groups = cfg.num_group_tokens[s]
        if num_groups:
            # A stage fed by an earlier one starts its tokens at zero: the projection of
            # the previous stage's group tokens carries the signal.
            init = nn.initializers.zeros if prev_groups is not None else nn.initializers.normal(0.02)
            groups = self.param("group_tokens", init, (1, num_groups, cfg.width))
            groups = jnp.broadcast_to(groups, (x.shape[0],) + groups.shape[1:]).astype(x.dtype)
            if prev_groups is not None:
                groups = groups + TokenMlp(cfg.width // 2, num_groups, self.dtype, name="group_projector")(
                    LayerNorm(name="group_projector_norm")(prev_groups))
            x = jnp.concatenate([x, groups], axis=1)
        block = block_class(self.remat)
        for i, rate in enumerate(self.drop_path_rates):
            x = block(cfg.num_heads, cfg.mlp_ratio, drop_path=rate, dtype=self.dtype,
                      name=f"block_{i}")(x, train)
        if not num_groups:
            return x, None, None
        x, groups = x[:, :-num_groups], x[:, -num_groups:]
        x, soft, assign = GroupingBlock(cfg.num_output_groups[s], cfg.num_heads, cfg.token_mlp_ratio,
                                        cfg.mlp_ratio, cfg.hard_assignment, cfg.gumbel_tau,
                                        cfg.assign_eps, self.dtype, name="grouping")(x, groups, train)
        return x, groups, (soft, assign)


class ImageTower(nn.Module):
    """images [B, H, W, 3] -> segment tokens [B, S, C] and named intermediates.

    Without grouping stages (a plain ViT) the segment tokens are the patch tokens and
    the lists of maps are empty.

    H and W may be any multiple of the patch size; the position embedding is then
    resized with PyTorch's bicubic rule, as the released evaluation did.
    """
    config: VisionConfig
    dtype: jnp.dtype = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, images, train: bool = False):
        cfg = self.config
        check_images(images, cfg.patch_size)
        p = cfg.patch_size
        x = nn.Conv(cfg.width, (p, p), strides=(p, p), padding="VALID", dtype=self.dtype,
                    name="patch_embed")(images.astype(self.dtype))
        grid = x.shape[1:3]
        x = LayerNorm(name="patch_norm")(x.reshape(x.shape[0], -1, cfg.width))
        pos = self.param("pos_embed", nn.initializers.normal(0.02),
                         (1, cfg.grid_size**2, cfg.width))
        x = x + resize_pos_embed(pos, (cfg.grid_size,) * 2, grid).astype(x.dtype)

        rates = np.linspace(0.0, cfg.drop_path_rate, sum(cfg.depths)).tolist()
        soft_maps, hard_maps = [], []
        groups, start = None, 0
        for s, depth in enumerate(cfg.depths):
            x, groups, maps = GroupingStage(cfg, s, tuple(rates[start:start + depth]), self.dtype,
                                            self.remat, name=f"stage_{s}")(x, groups, train)
            start += depth
            if maps is not None:
                soft_maps.append(maps[0])
                hard_maps.append(maps[1])
        x = LayerNorm(name="norm")(x)
        return x, {"soft_maps": soft_maps, "hard_maps": hard_maps}
