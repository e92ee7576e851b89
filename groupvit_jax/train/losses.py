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
    return _multi_label_from_logits(_rows_sharded(scale * img @ prompts.T),
                                    _rows_sharded(scale * prompts @ img.T), k)


def _multi_label_from_logits(logits_img, logits_txt, k):
    """The multi-label loss from scaled similarities of image i to prompt (j, k) at column
    j*K + k (logits_img [B, B*K]) and of prompt (j, k) to image i (logits_txt [B*K, B])."""
    b = logits_img.shape[0]
    # [B, B, K]: image i against every image's K prompts; own prompts on the diagonal.
    logp_img = jax.nn.log_softmax(logits_img, axis=-1).reshape(b, b, k)
    own = jnp.take_along_axis(logp_img, jnp.arange(b)[:, None, None], axis=1)[:, 0]
    loss_img = -own.mean()
    logp_txt = jax.nn.log_softmax(logits_txt, axis=-1)
    owner = jnp.repeat(jnp.arange(b), k)
    loss_txt = -jnp.take_along_axis(logp_txt, owner[:, None], axis=1).mean()
    return 0.5 * (loss_img + loss_txt)


def segment_multi_label_contrastive(segment_emb, prompt_emb, scale):
    """The multi-label loss with image i's similarity to a prompt taken from its
    best-matching segment, max_s cos(segment (i, s), prompt), instead of from the mean
    image embedding: each noun is trained to name ONE segment, as segments are named at
    test time (not part of the paper; the train/test mismatch named by TCL and PGSeg).

    segment_emb [B, S, D], prompt_emb [B, K, D], both un-normalised."""
    b, k, _ = prompt_emb.shape
    seg = l2_normalize(segment_emb)
    prompts = l2_normalize(prompt_emb).reshape(b * k, -1)
    sim = jnp.einsum("bsd,pd->bsp", seg, prompts).max(axis=1)
    return _multi_label_from_logits(_rows_sharded(scale * sim), _rows_sharded(scale * sim.T), k)


def group_balance(soft, hard):
    """Usage balance of one grouping stage, per image (the mixture-of-experts load
    balancing loss of Switch Transformers, over groups instead of experts; not part of
    the paper): G * sum_g f_g * p_g, with f_g the fraction of tokens the forward pass
    assigned to group g (no gradient) and p_g the mean soft assignment to g. It is 1
    when usage is uniform and G when one group takes every token.

    soft, hard [B, G, N] (the assignment is a distribution over the G groups)."""
    g = soft.shape[1]
    f = jax.lax.stop_gradient(hard.astype(jnp.float32)).mean(axis=-1)
    p = soft.astype(jnp.float32).mean(axis=-1)
    return (g * (f * p).sum(axis=-1)).mean()


def group_infomax(soft, eps=1e-8):
    """Usage balance that flat assignments cannot satisfy (information maximisation, as
    in IMSAT-style clustering; not part of the paper): per image, the mean entropy of each
    token's assignment minus the entropy of the image's mean assignment, over log G.
    0 when every token is sure of its group and the groups are used equally; 1 when
    every token is sure of the same group, or when every token is spread evenly over the
    groups (what minimises the Switch form of group_balance).

    soft [B, G, N]: the noise-free assignment (a distribution over the G groups)."""
    soft = soft.astype(jnp.float32)
    g = soft.shape[1]
    token_entropy = -(soft * jnp.log(soft + eps)).sum(axis=1).mean(axis=-1)      # [B]
    usage = soft.mean(axis=-1)                                                  # [B, G]
    usage_entropy = -(usage * jnp.log(usage + eps)).sum(axis=-1)                # [B]
    return ((token_entropy - usage_entropy) / jnp.log(g)).mean() + 1.0


def make_mosaics(images):
    """images [B, H, W, C] (B a multiple of 4) -> [B/4, H, W, C]: mosaic m tiles images
    4m..4m+3, each halved by 2x2 averaging, as top-left, top-right, bottom-left,
    bottom-right (MixReorg's mixing, cheapest form; not part of the paper)."""
    b, h, w, c = images.shape
    small = images.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    small = small.reshape(b // 4, 2, 2, h // 2, w // 2, c)           # [M, row, col, h, w, c]
    return small.transpose(0, 1, 3, 2, 4, 5).reshape(b // 4, h, w, c)


def quadrant_pooling(assign_maps, segment_emb, grid: int):
    """Each quadrant's embedding: the segments' embeddings weighted by the fraction of
    the quadrant's patches each segment holds.

    assign_maps: the stages' assignments [M, S_i, N_{i-1}] (chained: patch -> final
    segment), segment_emb [M, S, D], grid: patches per side. Returns [M*4, D] in the
    order of make_mosaics (mosaic-major, then TL, TR, BL, BR)."""
    chain = assign_maps[0]                                    # [M, S_0, N]
    for later in assign_maps[1:]:
        chain = jnp.einsum("bsg,bgn->bsn", later, chain)       # [M, S, N]
    m, s, _ = chain.shape
    half = grid // 2
    chain = chain.reshape(m, s, 2, half, 2, half).mean(axis=(3, 5)).reshape(m, s, 4)
    return jnp.einsum("bsq,bsd->bqd", chain, segment_emb).reshape(m * 4, -1)


def similarity_stats(image_emb, text_emb):
    """Mean cosine similarity of matching (positive) and non-matching (negative) pairs."""
    sim = l2_normalize(image_emb) @ l2_normalize(text_emb).T
    n = sim.shape[0]
    pos = jnp.trace(sim) / n
    neg = (sim.sum() - jnp.trace(sim)) / max(n * (n - 1), 1)
    return {"pos_similarity": pos, "neg_similarity": neg}
def segment_noun_contrastive(segment_emb, prompt_emb, prompt_tokens, scale,
                             scope: str = "batch", symmetric: bool = True,
                             noun_token_ids=None, tau: float = 0.0):
    """Segment-to-noun loss with WITHIN-image negatives (after TCL / PGSeg; not part of
    the paper): for each image i and each of its K prompts k, the segment
    s* = argmax_s cos(segment (i, s), prompt (i, k)) (a choice without gradient) must
    name prompt (i, k) among the prompts of the scope, the same image's other prompts
    included; so a segment carrying every object of a scene cannot name any of them
    confidently. Prompts whose token ids equal prompt (i, k)'s (the caption filling an
    empty slot, repeats) are taken out of its negatives.
    scope: "batch" (every prompt of the batch) or "image" (only image i's own prompts).
    symmetric (scope "batch" only): also prompt (i, k) against every image's best segment
        for it, target image i (the text -> segment term); the two are averaged.
    tau: 0 picks the best segment s* alone; > 0 weighs every segment's loss by a softmax
        of its cosine to prompt (i, k) over the segments at temperature tau (no gradient
        through the weights): at a collapse (one segment nearest to all prompts, whose
        rows' gradients cancel on it) the other segments are still pulled to their nouns.
    noun_token_ids [V] (optional): token ids of known nouns; a prompt holding one of them
        is not a negative of a prompt holding the same one (another image's "zebra" in
        another template), and an image with a prompt holding it is not a negative of
        that prompt in the text -> segment term.

    segment_emb [B, S, D], prompt_emb [B, K, D] (un-normalised), prompt_tokens [B, K, L]."""
    if scope not in ("batch", "image"):
        raise ValueError(f"Unknown segment_noun scope {scope!r}; known: 'batch', 'image'.")
    b, k, _ = prompt_emb.shape
    seg = l2_normalize(segment_emb)                                  # [B, S, D]
    prompts = l2_normalize(prompt_emb)                               # [B, K, D]
    sim_own = jax.lax.stop_gradient(jnp.einsum("bsd,bkd->bks", seg, prompts))  # [B, K, S]
    if tau > 0:   # a sharp softmax over the segments: every segment gets its share
        weights = jax.nn.softmax(sim_own / tau, axis=-1)
    else:         # the best segment only
        weights = jax.nn.one_hot(jnp.argmax(sim_own, axis=-1), seg.shape[1])
    flat = prompts.reshape(b * k, -1)
    seg_logits = scale * jnp.einsum("bsd,pd->bsp", seg, flat)          # [B, S, BK]
    toks = prompt_tokens.reshape(b * k, -1)
    same = (toks[:, None, :] == toks[None, :, :]).all(axis=-1)
    masked = same & ~jnp.eye(b * k, dtype=bool)
    owner = jnp.repeat(jnp.arange(b), k)
    if noun_token_ids is not None:
        ids = jnp.asarray(noun_token_ids)
        hits = (toks[:, :, None] == ids[None, None, :]).any(axis=1).astype(jnp.float32)
        masked = masked | ((hits @ hits.T > 0) & ~jnp.eye(b * k, dtype=bool))
    if scope == "image":
        masked = masked | (owner[:, None] != owner[None, :])
    # row (i, k), segment s: image i's segment s against the prompts not masked for (i, k)
    logits = jnp.where(masked.reshape(b, k, 1, b * k), -1e9, seg_logits[:, None])
    logp = jax.nn.log_softmax(logits, axis=-1)                          # [B, K, S, BK]
    target = jnp.arange(b * k).reshape(b, k, 1, 1)
    nll = -jnp.take_along_axis(logp, jnp.broadcast_to(target, (b, k, seg.shape[1], 1)),
                               axis=-1)[..., 0]                         # [B, K, S]
    loss = (weights * nll).sum(axis=-1).mean()
    if scope == "batch" and symmetric:
        # prompt p against image j's best segment for it: [BK, B]
        best_sim = jnp.einsum("bsd,pd->pbs", seg, flat).max(axis=-1)
        best_sim = scale * best_sim
        if noun_token_ids is not None:
            image_has = hits.reshape(b, k, -1).max(axis=1)                 # [B, V]
            shared = (hits @ image_has.T > 0) & (owner[:, None] != jnp.arange(b)[None, :])
            best_sim = jnp.where(shared, -1e9, best_sim)
        logp = jax.nn.log_softmax(best_sim, axis=-1)
        loss_txt = -jnp.take_along_axis(logp, owner[:, None], axis=1).mean()
        loss = 0.5 * (loss + loss_txt)
    return loss
