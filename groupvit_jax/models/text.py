"""The CLIP text tower: causal transformer, feature taken at the end-of-text token."""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from groupvit_jax.models.config import TextConfig
from groupvit_jax.models.layers import LayerNorm, block_class, quick_gelu


def check_tokens(tokens, context_length: int) -> None:
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [N, L] integer ids, got shape {tokens.shape}.")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"tokens must be integer ids, got dtype {tokens.dtype}.")
    if tokens.shape[1] > context_length:
        raise ValueError(f"tokens have length {tokens.shape[1]}, longer than the model's context "
                         f"of {context_length}.")


# The short length the tower runs at when every row ends by it; longer rows run at the
# full context. Only here (and from 65 tokens up) do XLA's CPU kernels round the causal
# attention's q.k logits as at 77 tokens; at 17-64 they pick other tilings and differ by
# an ulp (measured at head width 64), so finer buckets would lose the bit-identical loss.
SHORT_LENGTH = 16


def trimmed_length(tokens, context_length: int) -> int:
    """The length that keeps every row's end-of-text token: int tokens [..., L] ->
    SHORT_LENGTH when it suffices, else the full length (min(L, context_length)).

    The tower is causal and pools at the end-of-text token, so the tokens after it
    change nothing: trimmed rows give the same features (tests/test_text_trim.py).
    """
    tokens = np.asarray(tokens)
    full = min(tokens.shape[-1], context_length)
    if tokens.size and int(np.argmax(tokens, axis=-1).max()) >= SHORT_LENGTH:
        return full
    return min(SHORT_LENGTH, full)


class TextTower(nn.Module):
    """tokens [N, L] int -> pooled features [N, width] and named intermediates."""
    config: TextConfig
    dtype: jnp.dtype = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, tokens, train: bool = False):
        cfg = self.config
        check_tokens(tokens, cfg.context_length)
        w, depth = cfg.width, cfg.depth
        # The residual stream stays in the parameters' float32 (as the image tower's);
        # only the blocks' matmuls run in `dtype`.
        x = nn.Embed(cfg.vocab_size, w, embedding_init=nn.initializers.normal(0.02),
                     name="token_embed")(tokens)
        pos = self.param("pos_embed", nn.initializers.normal(0.01), (cfg.context_length, w))
        x = x + pos[:tokens.shape[1]]
        # CLIP's initialisation scales the residual projections with depth.
        proj_std = w**-0.5 * (2 * depth)**-0.5
        block = block_class(self.remat)
        for i in range(depth):
            x = block(cfg.num_heads, cfg.mlp_ratio, quick_gelu, causal=True, dtype=self.dtype,
                      qkv_init=nn.initializers.normal(w**-0.5),
                      proj_init=nn.initializers.normal(proj_std),
                      fc1_init=nn.initializers.normal((2 * w)**-0.5), name=f"block_{i}")(x, train)
        x = LayerNorm(name="norm")(x)
        # End-of-text has the largest id (49407) and pads are 0, so argmax finds it.
        eot = jnp.argmax(tokens, axis=-1)
        pooled = jnp.take_along_axis(x, eot[:, None, None], axis=1)[:, 0]
        return pooled, {"tokens": x}
