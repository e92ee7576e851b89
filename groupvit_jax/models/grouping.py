"""The grouping block: group tokens gather image tokens into segments.

Each image token is assigned to exactly one group (softmax over the GROUP axis).
Training adds Gumbel noise and takes the straight-through one-hot: the forward
pass sees the hard assignment, the gradient flows through the softmax.
Evaluation drops the noise but still uses the hard one-hot, as the released code.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from groupvit_jax.models.layers import CrossAttention, LayerNorm, Mlp, TokenMlp
from groupvit_jax.models.precision import wide_einsum


def straight_through_one_hot(soft: jax.Array, axis: int) -> jax.Array:
    """One-hot of the argmax in the forward pass, d(soft) in the backward pass."""
    hard = jax.nn.one_hot(jnp.argmax(soft, axis=axis), soft.shape[axis], axis=axis,
                          dtype=soft.dtype)
    # Same operation order as the reference so the forward values agree to the ulp.
    return hard - jax.lax.stop_gradient(soft) + soft


class AssignAttention(nn.Module):
    """Single-head assignment of image tokens to groups.

    Returns (updated group features, soft map, assignment). Both maps are
    [B, S_out, N]: the soft map is the noise-free softmax (segmentation masks are
    built from it); the assignment is what the forward pass used.
    """
    hard: bool = True
    tau: float = 1.0
    assign_eps: float = 1.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, groups, tokens, train: bool):
        width = groups.shape[-1]
        dense = lambda name: nn.Dense(width, dtype=self.dtype,
                                      kernel_init=nn.initializers.normal(0.02), name=name)
        q, k, v = dense("q")(groups), dense("k")(tokens), dense("v")(tokens)
        # The group softmax decides discrete assignments: at least float32.
        logits = wide_einsum("bsc,bnc->bsn", q, k) * width**-0.5
        soft = jax.nn.softmax(logits, axis=-2)
        if train:
            noise = jax.random.gumbel(self.make_rng("gumbel"), logits.shape, logits.dtype)
            assign = jax.nn.softmax((logits + noise) / self.tau, axis=-2)
        else:
            assign = soft
        if self.hard:
            assign = straight_through_one_hot(assign, axis=-2)
        # Each group is the mean of its members, damped by assign_eps for empty groups.
        weights = assign / (assign.sum(axis=-1, keepdims=True) + self.assign_eps)
        out = jnp.einsum("bsn,bnc->bsc", weights.astype(v.dtype), v)
        return dense("proj")(out), soft, assign


class CrossAttentionBlock(nn.Module):
    """Post-norm block letting the group tokens attend to the image tokens."""
    num_heads: int
    mlp_ratio: float = 4.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, groups, tokens):
        width = groups.shape[-1]
        x = groups + CrossAttention(self.num_heads, self.dtype, name="attn")(groups, tokens)
        x = x + Mlp(int(width * self.mlp_ratio), width, dtype=self.dtype,
                    name="mlp")(LayerNorm(name="norm")(x))
        return LayerNorm(name="norm_post")(x)


class GroupingBlock(nn.Module):
    """Groups N image tokens into `num_output_groups` segments.

    tokens [B, N, C], groups [B, S_in, C] -> segments [B, S_out, C], soft map,
    assignment map (both [B, S_out, N]).
    """
    num_output_groups: int
    num_heads: int
    token_mlp_ratio: float = 0.5
    mlp_ratio: float = 4.0
    hard: bool = True
    tau: float = 1.0
    assign_eps: float = 1.0
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens, groups, train: bool = False):
        width = tokens.shape[-1]
        groups = LayerNorm(name="norm_groups")(groups)
        tokens = LayerNorm(name="norm_tokens")(tokens)
        groups = TokenMlp(int(width * self.token_mlp_ratio), self.num_output_groups, self.dtype,
                          name="token_mlp")(groups)
        groups = LayerNorm(name="norm_projected")(groups)
        groups = CrossAttentionBlock(self.num_heads, self.mlp_ratio, self.dtype,
                                     name="cross_attn")(groups, tokens)
        out, soft, assign = AssignAttention(self.hard, self.tau, self.assign_eps, self.dtype,
                                            name="assign")(groups, tokens, train)
        out = out + groups
        out = out + Mlp(int(width * self.mlp_ratio), width, dtype=self.dtype,
                        name="mlp")(LayerNorm(name="norm_out")(out))
        return out, soft, assign
