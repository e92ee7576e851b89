"""Transformer building blocks shared by the image and text towers.

PyTorch conventions the released weights depend on: LayerNorm eps 1e-5 (Flax
uses 1e-6) and exact erf GELU in the image tower (Flax defaults to tanh).
"""
from __future__ import annotations

import functools
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from groupvit_jax.models.precision import wide_einsum

Initializer = Callable[..., jax.Array]

LayerNorm = functools.partial(nn.LayerNorm, epsilon=1e-5)


def gelu(x):
    # Flax's exact GELU, through erfc. PyTorch's form, x/2 (1 + erf(x/sqrt 2)), ran the
    # GELU's forward in 0.061 s of our CPU train step instead of 0.107 s, but rounding
    # that differently moved the toy world's main job (deterministic for given code) from
    # 95% to 72% image top-1 and 19.4 to 17.5 mIoU in one run each: not taken before
    # that job is measured over seeds.
    return nn.gelu(x, approximate=False)


def quick_gelu(x):
    return x * nn.sigmoid(1.702 * x)


class Mlp(nn.Module):
    """Linear -> activation -> Linear over the last axis."""
    hidden: int
    out: int
    act: Callable = gelu
    dtype: jnp.dtype = jnp.float32
    fc1_init: Initializer = nn.initializers.normal(0.02)
    fc2_init: Initializer = nn.initializers.normal(0.02)

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.hidden, dtype=self.dtype, kernel_init=self.fc1_init, name="fc1")(x)
        return nn.Dense(self.out, dtype=self.dtype, kernel_init=self.fc2_init, name="fc2")(self.act(x))


class TokenMlp(nn.Module):
    """An MLP over the token axis (MLP-Mixer style): [B, S_in, C] -> [B, S_out, C]."""
    hidden: int
    out: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = Mlp(self.hidden, self.out, dtype=self.dtype, name="mlp")(jnp.swapaxes(x, 1, 2))
        return jnp.swapaxes(y, 1, 2)


def _split_heads(x, num_heads):
    return x.reshape(*x.shape[:-1], num_heads, x.shape[-1] // num_heads)


def _attend(q, k, v, num_heads, causal=False):
    """Scaled dot-product attention; q [B,T,C], k/v [B,S,C] -> [B,T,C].

    Logits and softmax in at least float32: bfloat16 logits of size ~10 would be off
    by up to 0.03 before the exponential.
    """
    q, k, v = (_split_heads(a, num_heads) for a in (q, k, v))
    logits = wide_einsum("bthd,bshd->bhts", q * q.shape[-1]**-0.5, k)
    if causal:
        t, s = logits.shape[-2:]
        logits = jnp.where(jnp.tril(jnp.ones((t, s), bool)), logits, jnp.finfo(logits.dtype).min)
    weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    # Heads-major output, transposed after: asking the einsum for "bthd" made XLA copy
    # the whole [B, H, T, S] weight matrix and broke the softmax fusion (1.26x slower
    # 448x448 windows).
    out = jnp.swapaxes(jnp.einsum("bhts,bshd->bhtd", weights, v), 1, 2)
    return out.reshape(*out.shape[:-2], -1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (one matmul)."""
    num_heads: int
    causal: bool = False
    dtype: jnp.dtype = jnp.float32
    qkv_init: Initializer = nn.initializers.normal(0.02)
    proj_init: Initializer = nn.initializers.normal(0.02)

    @nn.compact
    def __call__(self, x):
        width = x.shape[-1]
        qkv = nn.Dense(3 * width, dtype=self.dtype, kernel_init=self.qkv_init, name="qkv")(x)
        q, k, v = jnp.split(qkv, 3, axis=-1)
        out = _attend(q, k, v, self.num_heads, self.causal)
        return nn.Dense(width, dtype=self.dtype, kernel_init=self.proj_init, name="proj")(out)


class CrossAttention(nn.Module):
    """Multi-head attention of queries over a separate context (separate projections)."""
    num_heads: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, context):
        width = x.shape[-1]
        dense = functools.partial(nn.Dense, width, dtype=self.dtype,
                                  kernel_init=nn.initializers.normal(0.02))
        out = _attend(dense(name="q")(x), dense(name="k")(context), dense(name="v")(context),
                      self.num_heads)
        return dense(name="proj")(out)


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per sample."""
    rate: float

    @nn.compact
    def __call__(self, x, deterministic: bool):
        if deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(self.make_rng("droppath"), keep,
                                    (x.shape[0],) + (1,) * (x.ndim - 1))
        return x * mask.astype(x.dtype) / keep


class TransformerBlock(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)); x + mlp(LN(x))."""
    num_heads: int
    mlp_ratio: float = 4.0
    act: Callable = gelu
    causal: bool = False
    drop_path: float = 0.0
    dtype: jnp.dtype = jnp.float32
    qkv_init: Initializer = nn.initializers.normal(0.02)
    proj_init: Initializer = nn.initializers.normal(0.02)
    fc1_init: Initializer = nn.initializers.normal(0.02)

    @nn.compact
    def __call__(self, x, train: bool = False):
        width = x.shape[-1]
        drop = DropPath(self.drop_path)
        y = SelfAttention(self.num_heads, self.causal, self.dtype, self.qkv_init, self.proj_init,
                          name="attn")(LayerNorm(name="norm1")(x))
        x = x + drop(y, deterministic=not train)
        y = Mlp(int(width * self.mlp_ratio), width, self.act, self.dtype, self.fc1_init,
                self.proj_init, name="mlp")(LayerNorm(name="norm2")(x))
        return x + drop(y, deterministic=not train)


def block_class(remat: bool):
    """The transformer block, rematerialised in the backward pass when asked."""
    return nn.remat(TransformerBlock, static_argnums=(2,)) if remat else TransformerBlock


class BatchNorm(nn.Module):
    """BatchNorm with PyTorch's semantics, so released running statistics load as-is.

    Normalises with the biased batch variance but keeps the UNBIASED variance in the
    running average (Flax keeps the biased one). Under jit over a sharded batch the
    statistics are over the global batch, which is what SyncBN gave the original.
    """
    momentum: float = 0.1   # PyTorch convention: weight of the new batch
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, use_running_average: bool):
        features = x.shape[-1]
        stats_dtype = jnp.promote_types(x.dtype, jnp.float32)
        scale = self.param("scale", nn.initializers.ones, (features,))
        bias = self.param("bias", nn.initializers.zeros, (features,))
        ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), jnp.float32)
        ra_var = self.variable("batch_stats", "var", jnp.ones, (features,), jnp.float32)
        if use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            axes = tuple(range(x.ndim - 1))
            x32 = x.astype(stats_dtype)
            mean = x32.mean(axes)
            var = jnp.square(x32 - mean).mean(axes)
            if not self.is_initializing():
                n = x32.size // features
                m = self.momentum
                ra_mean.value = (1 - m) * ra_mean.value + m * mean
                ra_var.value = (1 - m) * ra_var.value + m * var * (n / max(n - 1, 1))
        y = (x.astype(stats_dtype) - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
        return y.astype(x.dtype)
