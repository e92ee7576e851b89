"""The released training recipe: AdamW, decay mask, warm-up + cosine, clipping.

Learning rates are given for a global batch of 4096 and scaled linearly with the
actual global batch, as the released code did.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

REFERENCE_BATCH = 4096
# Parameters the paper's recipe would spare from weight decay (the released code
# decays them): temperatures, position embeddings, group tokens.
EXTRA_NO_DECAY = ("logit_scale", "multi_label_logit_scale", "pos_embed", "group_tokens")


def scaled(lr: float, global_batch: int) -> float:
    return lr * global_batch / REFERENCE_BATCH


def lr_schedule(base_lr, warmup_lr, min_lr, warmup_steps, total_steps):
    """The learning rate used by optimizer step t (0-based), as in the released code.

    timm's CosineLRScheduler(t_initial=total, warmup_t=warmup, warmup_prefix=False):
    f(t) = warmup_lr + t (base - warmup_lr) / warmup_steps for t < warmup_steps, else
    min + (base - min) (1 + cos(pi t / total)) / 2 with the ABSOLUTE step t. The
    released loop calls step_update(t) after step t, so step t trains with f(t - 1)
    and step 0 with warmup_lr.
    """
    def f(t):
        t = jnp.asarray(t, jnp.float32)
        warm = warmup_lr + t * (base_lr - warmup_lr) / max(warmup_steps, 1)
        cos = min_lr + 0.5 * (base_lr - min_lr) * (1 + jnp.cos(math.pi * t / total_steps))
        return jnp.where(t < warmup_steps, warm, cos)

    return lambda step: f(jnp.maximum(step - 1, 0))


def decay_mask(params, exclude_extra: bool = False):
    """True where weight decay applies: not on 1-D parameters or biases (the released
    rule); optionally not on temperatures, position embeddings and group tokens."""
    def decays(path, leaf):
        name = path[-1].key
        if jnp.ndim(leaf) == 1 or name == "bias":
            return False
        return not (exclude_extra and name in EXTRA_NO_DECAY)
    return jax.tree_util.tree_map_with_path(decays, params)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """Gradients scaled to a global norm of at most `max_norm` by one multiplication per
    element, as PyTorch's clip_grad_norm_ does (without its 1e-6). optax's version
    divides every element by the norm: XLA's CPU backend does not repeat a division in
    each of the moments' loops, so it writes the clipped gradients out in a pass of
    their own."""
    def update(updates, state, params=None):
        del params
        scale = jnp.minimum(1.0, max_norm / optax.tree.norm(updates))  # norm 0: 1
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(opt_config, global_batch: int, total_steps: int, warmup_steps: int):
    """optax chain: global-norm clip, then AdamW on the scaled warm-up + cosine schedule."""
    schedule = lr_schedule(scaled(opt_config.base_lr, global_batch),
                           scaled(opt_config.warmup_lr, global_batch),
                           scaled(opt_config.min_lr, global_batch), warmup_steps, total_steps)
    adamw = optax.adamw(schedule, b1=opt_config.b1, b2=opt_config.b2, eps=opt_config.eps,
                        weight_decay=opt_config.weight_decay,
                        mask=lambda p: decay_mask(p, opt_config.exclude_extra_from_decay))
    chain = [adamw] if not opt_config.clip_grad_norm else [
        clip_by_global_norm(opt_config.clip_grad_norm), adamw]
    return optax.chain(*chain), schedule
