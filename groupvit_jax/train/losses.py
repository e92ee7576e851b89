"""GroupViT's contrastive losses, as pure functions of projected embeddings.

Both take UN-normalised projected embeddings and the already clamped scale
(min(exp(s), 100)) and follow the released code: cosine similarities, soft-target
cross-entropy in both directions, mean over rows, halved and summed. Under jit
over a batch-sharded mesh they see the global batch, which is what the released
code's all-gather with gradient computed.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from groupvit_jax.models.model import l2_normalize


def _rows_sharded(x):
    """Keep a [B, ...] logits matrix split by rows over the data axis, when there is one:
    at B=4096, K=3 the multi-label logits are 4096 x 12288 (192 MiB in float32) and
    must not be replicated on every device."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or "data" not in mesh.axis_names:
        return x
    spec = jax.sharding.PartitionSpec("data", *([None] * (x.ndim - 1)))
    return jax.lax.with_sharding_constraint(x, spec)


def image_text_contrastive(image_emb, text_emb, scale):
    """CLIP loss: image i matches caption i among the B captions, and vice versa."""
    img, txt = l2_normalize(image_emb), l2_normalize(text_emb)
    labels = jnp.arange(img.shape[0])
    logits = _rows_sharded(scale * img @ txt.T)
    logits_t = _rows_sharded(scale * txt @ img.T)
    loss_img = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1).mean()
    loss_txt = -jnp.take_along_axis(jax.nn.log_softmax(logits_t), labels[:, None], 1).mean()
    return 0.5 * (loss_img + loss_txt)


def multi_label_contrastive(image_emb, prompt_emb, scale):
    """Image i's targets are its own K prompts (1/K each) among all B*K prompts, so the
    same words prompted for another image are negatives; prompt (i, k)'s target is
    image i among the B images."""
    b, k, _ = prompt_emb.shape
    img = l2_normalize(image_emb)
    prompts = l2_normalize(prompt_emb).reshape(b * k, -1)
    # [B, B, K]: image i against every image's K prompts; own prompts on the diagonal.
    logp_img = jax.nn.log_softmax(_rows_sharded(scale * img @ prompts.T), axis=-1).reshape(b, b, k)
    own = jnp.take_along_axis(logp_img, jnp.arange(b)[:, None, None], axis=1)[:, 0]
    loss_img = -own.mean()
    logp_txt = jax.nn.log_softmax(_rows_sharded(scale * prompts @ img.T), axis=-1)
    owner = jnp.repeat(jnp.arange(b), k)
    loss_txt = -jnp.take_along_axis(logp_txt, owner[:, None], axis=1).mean()
    return 0.5 * (loss_img + loss_txt)


def similarity_stats(image_emb, text_emb):
    """Mean cosine similarity of matching (positive) and non-matching (negative) pairs."""
    sim = l2_normalize(image_emb) @ l2_normalize(text_emb).T
    n = sim.shape[0]
    pos = jnp.trace(sim) / n
    neg = (sim.sum() - jnp.trace(sim)) / max(n * (n - 1), 1)
    return {"pos_similarity": pos, "neg_similarity": neg}
