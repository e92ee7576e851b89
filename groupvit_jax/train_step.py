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

from groupvit_jax import losses, sharding
from groupvit_jax.config import GroupViTConfig
from groupvit_jax.model import GroupViT


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


def compute_losses(module, params, batch_stats, batch, rng, multi_label_weight):
    """Forward pass in train mode; returns (total loss, (metrics, new batch_stats))."""
    images, tokens = batch["images"], batch["tokens"]
    b, t, length = tokens.shape
    gumbel, droppath = jax.random.split(rng)
    out, updates = module.apply(
        {"params": params, "batch_stats": batch_stats}, images, tokens.reshape(b * t, length),
        train=True, rngs={"gumbel": gumbel, "droppath": droppath}, mutable=["batch_stats"])
    # Captions and prompts went through the text projector together (shared BN stats).
    text = out["text_embeds"].reshape(b, t, -1)
    image = out["image_embeds"]
    loss_it = losses.image_text_contrastive(image, text[:, 0], out["logit_scale"])
    metrics = {"loss_image_text": loss_it, "logit_scale": out["logit_scale"],
               **losses.similarity_stats(image, text[:, 0])}
    total = loss_it
    if t > 1:
        loss_ml = losses.multi_label_contrastive(image, text[:, 1:],
                                                 out["multi_label_logit_scale"])
        metrics.update(loss_multi_label=loss_ml,
                       multi_label_logit_scale=out["multi_label_logit_scale"])
        total = total + multi_label_weight * loss_ml
    metrics["loss"] = total
    return total, (metrics, updates["batch_stats"])


def make_train_step(model_config: GroupViTConfig, optimizer, schedule, mesh, shardings,
                    multi_label_weight: float = 1.0):
    """jit(step)(state, batch) -> (state, metrics); the state is donated."""
    module = GroupViT(model_config)

    def step(state: TrainState, batch):
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        grad_fn = jax.value_and_grad(compute_losses, argnums=1, has_aux=True)
        (_, (metrics, batch_stats)), grads = grad_fn(module, state.params, state.batch_stats,
                                                      batch, rng, multi_label_weight)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics.update(grad_norm=optax.tree.norm(grads), lr=schedule(state.step))
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                                  opt_state=opt_state)
        return new_state, metrics

    batch_spec = {"images": sharding.batch_sharding(mesh, 4),
                  "tokens": sharding.batch_sharding(mesh, 3)}
    jitted = jax.jit(step, in_shardings=(shardings, batch_spec),
                     out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=(0,))

    def run(state, batch):
        with jax.set_mesh(mesh):  # the losses read it to keep logits row-sharded
            return jitted(state, batch)
    return run
