"""Train state and the jitted, sharded GroupViT train step.

The step sees the GLOBAL batch as one sharded array: the contrastive losses, their
gradients and the projectors' BatchNorm statistics are those of a single-device
run on the same examples (what the released all-gather + SyncBN computed).
"""
from __future__ import annotations

import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from groupvit_jax.models.config import GroupViTConfig
from groupvit_jax.models.model import GroupViT
from groupvit_jax.models.text import trimmed_length
from groupvit_jax.train import losses, sharding
from groupvit_jax.train.extra_losses import ExtraLosses


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    rng: jax.Array   # folded with the step: every step's noise is reproducible on resume


def init_state(model_config: GroupViTConfig, optimizer, seed: int, num_prompts: int) -> TrainState:
    module = GroupViT(model_config)
    size = model_config.vision.image_size
    images = jnp.zeros((2, size, size, 3), jnp.float32)
    tokens = jnp.zeros((2 * (1 + num_prompts), model_config.text.context_length), jnp.int32)
    init_rng, state_rng = jax.random.split(jax.random.key(seed))
    variables = module.init(init_rng, images, tokens)
    return TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                      batch_stats=variables["batch_stats"],
                      opt_state=optimizer.init(variables["params"]),
                      rng=jax.random.key_data(state_rng))


def create_train_state(model_config, optimizer, mesh, seed: int, num_prompts: int):
    """The state, initialised directly in its sharded layout (never whole on one device)."""
    init = functools.partial(init_state, model_config, optimizer, seed, num_prompts)
    abstract = jax.eval_shape(init)
    shardings = state_shardings(abstract, mesh)
    return jax.jit(init, out_shardings=shardings)(), shardings


def state_shardings(abstract_state, mesh):
    return jax.tree.map(lambda leaf: sharding.param_sharding(leaf, mesh), abstract_state)


def text_lengths(tokens, context_length: int) -> tuple[int, int]:
    """The (caption, prompt) lengths the text tower needs for a host's numpy tokens
    [B, 1+K, L]: their `trimmed_length` buckets. Several hosts must agree on them
    (`sharding.host_max`)."""
    return (trimmed_length(tokens[:, 0], context_length),
            trimmed_length(tokens[:, 1:], context_length))


def _train_forward(model, images, captions, prompts):
    return {**model.encode_image(images, True), **model.encode_captions_prompts(captions, prompts,
                                                                             True)}


def embed(module, params, batch_stats, images, tokens, rng, with_outputs: bool = False,
          text_lengths=None):
    """Train-mode embeddings: (image [B, D], text [B, 1+K, D]) and the new batch_stats;
    with_outputs: also the model's whole output dict (segments, assignment maps).

    text_lengths: (caption, prompt) token lengths the text tower runs at, static
    (`text.trimmed_length` of the batch on the host); None runs all L tokens.
    """
    caption_length, prompt_length = text_lengths or (tokens.shape[-1],) * 2
    gumbel, droppath = jax.random.split(rng)
    out, updates = module.apply(
        {"params": params, "batch_stats": batch_stats}, images, tokens[:, 0, :caption_length],
        tokens[:, 1:, :prompt_length], method=_train_forward,
        rngs={"gumbel": gumbel, "droppath": droppath}, mutable=["batch_stats"])
    embeddings = (out["image_embeds"], out["text_embeds"])
    if with_outputs:
        return embeddings, updates["batch_stats"], out
    return embeddings, updates["batch_stats"]


def contrastive_losses(image, text, temperatures, multi_label_weight,
                       image_text_weight: float = 1.0):
    """Total loss and metrics from the global batch's embeddings (caption = text[:, 0])."""
    scale = temperatures["logit_scale"]
    loss_it = losses.image_text_contrastive(image, text[:, 0], scale)
    metrics = {"loss_image_text": loss_it, "logit_scale": scale,
               **losses.similarity_stats(image, text[:, 0])}
    total = image_text_weight * loss_it
    if text.shape[1] > 1:
        ml_scale = temperatures["multi_label_logit_scale"]
        loss_ml = losses.multi_label_contrastive(image, text[:, 1:], ml_scale)
        metrics.update(loss_multi_label=loss_ml, multi_label_logit_scale=ml_scale)
        total = total + multi_label_weight * loss_ml
    metrics["loss"] = total
    return total, metrics


def compute_losses(module, params, batch_stats, batch, rng, multi_label_weight,
                   extra: ExtraLosses = ExtraLosses(), text_lengths=None):
    """Forward pass in train mode; returns (total loss, (metrics, new batch_stats)).
    `extra`: the toy world's additions to the paper's losses (none by default);
    `text_lengths` as in `embed`."""
    (image, text), new_stats, outputs = embed(module, params, batch_stats, batch["images"],
                                              batch["tokens"], rng, with_outputs=True,
                                              text_lengths=text_lengths)
    temperatures = module.apply({"params": params}, method="temperatures")
    total, metrics = contrastive_losses(image, text, temperatures, multi_label_weight,
                                        extra.image_text_weight)
    if extra.active:
        added, added_metrics = extra.losses(module, params, batch_stats, batch, outputs, text,
                                            temperatures, rng)
        total = total + added
        metrics.update(added_metrics, loss=total)
    return total, (metrics, new_stats)


def _micro(x, accum_steps):
    """[B, ...] -> [A, B/A, ...] with micro-batch j = examples j, j+A, j+2A, ...: each
    device's contiguous rows hold a slice of EVERY micro-batch, so all devices work on
    each one."""
    x = x.reshape(x.shape[0] // accum_steps, accum_steps, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1)


def _unmicro(x):
    return jnp.swapaxes(x, 0, 1).reshape(-1, *x.shape[2:])


def accumulated_grads(module, params, batch_stats, batch, rng, multi_label_weight,
                      accum_steps, text_lengths=None):
    """Gradient of the GLOBAL-batch contrastive loss in `accum_steps` micro-batches.

    Contrastive losses do not split over micro-batches (the negatives span the batch),
    so this caches gradients (Gao et al., 2021): embed every micro-batch without
    gradients, take the loss and its gradient w.r.t. the embeddings over the whole
    batch, then re-run each micro-batch forward and pull that gradient back. Memory is
    one micro-batch of activations plus the [B, D] embeddings. BatchNorm statistics are
    per micro-batch, as in the released code's accumulation.
    """
    images, tokens = _micro(batch["images"], accum_steps), _micro(batch["tokens"], accum_steps)

    def embed_micro(p, stats, j):
        return embed(module, p, stats, images[j], tokens[j], jax.random.fold_in(rng, j),
                     text_lengths=text_lengths)

    def collect(stats, j):
        emb, stats = embed_micro(params, stats, j)
        return stats, emb
    new_stats, (image, text) = jax.lax.scan(collect, batch_stats, jnp.arange(accum_steps))
    image, text = _unmicro(image), _unmicro(text)

    def loss_of(embeddings, p):
        temperatures = module.apply({"params": p}, method="temperatures")
        return contrastive_losses(*embeddings, temperatures, multi_label_weight)
    (_, metrics), (d_emb, grads) = jax.value_and_grad(loss_of, argnums=(0, 1), has_aux=True)(
        (image, text), params)
    d_image, d_text = _micro(d_emb[0], accum_steps), _micro(d_emb[1], accum_steps)

    def pull_back(grads, j):
        _, vjp = jax.vjp(lambda p: embed_micro(p, batch_stats, j)[0], params)
        return jax.tree.map(jnp.add, grads, vjp((d_image[j], d_text[j]))[0]), None
    grads, _ = jax.lax.scan(pull_back, grads, jnp.arange(accum_steps))
    return metrics, new_stats, grads


def make_train_step(model_config: GroupViTConfig, optimizer, schedule, mesh, shardings,
                    multi_label_weight: float = 1.0, accum_steps: int = 1,
                    extra: ExtraLosses = ExtraLosses()):
    """jit(step)(state, batch, text_lengths=None) -> (state, metrics); the state is donated.

    text_lengths: the (caption, prompt) token lengths of this batch's text tower, from
    `text.trimmed_length` on the host (the same on every host); each pair compiles once.
    """
    module = GroupViT(model_config)
    if accum_steps > 1 and extra != ExtraLosses():
        raise NotImplementedError("config.extra_losses (the toy world's additions) need "
                                  "grad_accum_steps=1.")

    def step(state: TrainState, batch, text_lengths):
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        if accum_steps > 1:
            metrics, batch_stats, grads = accumulated_grads(
                module, state.params, state.batch_stats, batch, rng, multi_label_weight,
                accum_steps, text_lengths)
        else:
            grad_fn = jax.value_and_grad(compute_losses, argnums=1, has_aux=True)
            (_, (metrics, batch_stats)), grads = grad_fn(module, state.params, state.batch_stats,
                                                          batch, rng, multi_label_weight,
                                                          extra, text_lengths)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics.update(grad_norm=optax.tree.norm(grads), lr=schedule(state.step))
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                                  opt_state=opt_state)
        return new_state, metrics

    batch_spec = {"images": sharding.batch_sharding(mesh, 4),
                  "tokens": sharding.batch_sharding(mesh, 3)}
    jitted = jax.jit(step, in_shardings=(shardings, batch_spec),
                     out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=(0,),
                     static_argnums=(2,))

    def run(state, batch, text_lengths=None):
        with jax.set_mesh(mesh):  # the losses read it to keep logits row-sharded
            return jitted(state, batch, text_lengths)
    return run
