"""GroupViT: image and text towers, their projection heads and temperatures."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from groupvit_jax.models.config import GroupViTConfig
from groupvit_jax.models.layers import BatchNorm
from groupvit_jax.models.precision import WideDense
from groupvit_jax.models.text import TextTower
from groupvit_jax.models.vision import ImageTower

MAX_LOGIT_SCALE = 100.0


def l2_normalize(x, eps=1e-12):
    """x / ||x|| over the last axis, in float32: embeddings before cosine similarities."""
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


def clamped_scale(log_scale):
    """min(exp(s), 100): the factor a learned log-temperature puts on cosine similarities."""
    return jnp.minimum(jnp.exp(log_scale), MAX_LOGIT_SCALE)


class ProjectionHead(nn.Module):
    """Linear -> BatchNorm -> ReLU -> Linear into the shared embedding space.

    Both products come out in float32 under bfloat16 compute: BatchNorm subtracts a
    batch mean that is most of its input, and the embeddings end in cosine similarities
    scaled by up to 100.
    """
    hidden: int
    out: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        x = WideDense(self.hidden, dtype=self.dtype, name="fc1")(x)
        x = nn.relu(BatchNorm(name="bn")(x, use_running_average=not train))
        return WideDense(self.out, dtype=self.dtype, name="fc2")(x)


class GroupViT(nn.Module):
    """The full model. Call `encode_image` / `encode_text` through `apply(..., method=)`.

    Outputs are dicts of named arrays, so evaluators and visualisations pick what
    they need and jit prunes the rest. Embeddings are projected, NOT L2-normalised.
    """
    config: GroupViTConfig

    def setup(self):
        cfg = self.config
        dtype = jnp.dtype(cfg.dtype)
        self.image_tower = ImageTower(cfg.vision, dtype, cfg.remat)
        self.text_tower = TextTower(cfg.text, dtype, cfg.remat)
        self.image_head = ProjectionHead(cfg.projection_hidden, cfg.projection_dim, dtype)
        self.text_head = ProjectionHead(cfg.projection_hidden, cfg.projection_dim, dtype)
        init = nn.initializers.constant(cfg.logit_scale_init)
        self.logit_scale = self.param("logit_scale", init, ())
        if cfg.multi_label_scale:
            self.multi_label_logit_scale = self.param("multi_label_logit_scale", init, ())

    def encode_image(self, images, train: bool = False):
        """images [B, H, W, 3] float, ImageNet-normalised -> dict of named outputs."""
        segments, out = self.image_tower(images, train)
        pooled = segments.mean(axis=1)
        return {
            "image_embeds": self.image_head(pooled, train),
            "segment_embeds": self.embed_segments(segments),
            "segment_tokens": segments,
            "image_features": pooled,
            "soft_maps": out["soft_maps"],
            "hard_maps": out["hard_maps"],
        }

    def embed_segments(self, tokens):
        """Segment tokens [B, S, C] (the tower's, or e.g. k-means cluster means) ->
        projected embeddings [B, S, D].

        Segment embeddings are an evaluation product: always the running statistics,
        so they never perturb the BatchNorm state in training.
        """
        b, s, c = tokens.shape
        return self.image_head(tokens.reshape(b * s, c), False).reshape(b, s, -1)

    def encode_text(self, tokens, train: bool = False):
        """tokens [N, L] int32 -> dict with text_embeds [N, D] and the pooled features."""
        pooled, _ = self.text_tower(tokens, train)
        return {"text_embeds": self.text_head(pooled, train),
                "text_features": pooled}

    def encode_captions_prompts(self, captions, prompts, train: bool = False):
        """captions [B, Lc] and prompts [B, K, Lp] int32 -> text_embeds [B, 1+K, D].

        Sets of different lengths (the trainer trims each) run the tower separately; all
        rows then go through the projector in ONE call, in the [B, 1+K] order of the
        untrimmed batch: BatchNorm's training statistics see captions and prompts
        together, as in the released code.
        """
        b, k, _ = prompts.shape
        if captions.shape[-1] == prompts.shape[-1]:  # one tower call, as untrimmed
            tokens = jnp.concatenate([captions[:, None], prompts], axis=1)
            features, _ = self.text_tower(tokens.reshape(b * (1 + k), -1), train)
        else:
            features, _ = self.text_tower(captions, train)
            if k:
                prompt_features, _ = self.text_tower(prompts.reshape(b * k, -1), train)
                features = jnp.concatenate([features[:, None],
                                            prompt_features.reshape(b, k, -1)], axis=1)
            features = features.reshape(b * (1 + k), -1)
        embeds = self.text_head(features, train)
        return {"text_embeds": embeds.reshape(b, 1 + k, -1)}

    def temperatures(self):
        """The clamped scales min(exp(s), 100) that multiply cosine similarities."""
        out = {"logit_scale": clamped_scale(self.logit_scale)}
        if self.config.multi_label_scale:
            out["multi_label_logit_scale"] = clamped_scale(self.multi_label_logit_scale)
        return out

    def __call__(self, images, tokens, train: bool = False):
        return {**self.encode_image(images, train), **self.encode_text(tokens, train),
                **self.temperatures()}
