"""Run in a subprocess with 8 fake CPU devices: the sharded step equals one device.

    python -m tests.sharded_step_check

Prints a JSON report; tests/test_train_step.py asserts on it.
"""
import json
import os

os.environ["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=8 "
                           "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

from groupvit_jax.train import sharding  # noqa: E402
from groupvit_jax.train import step as train_step  # noqa: E402
from groupvit_jax.models.model import GroupViT  # noqa: E402
from groupvit_jax.train.optim import make_optimizer  # noqa: E402
from ml_collections import ConfigDict  # noqa: E402
from tests.tiny import tiny_config  # noqa: E402

B, K = 24, 3
config = tiny_config()
opt_cfg = ConfigDict(dict(base_lr=1.6e-3, warmup_lr=4e-6, min_lr=4e-5, b1=0.9, b2=0.999, eps=1e-8,
                          weight_decay=0.05, clip_grad_norm=5.0, exclude_extra_from_decay=False))
optimizer, schedule = make_optimizer(opt_cfg, B, total_steps=100, warmup_steps=10)
rng = np.random.default_rng(0)
batch = {"images": rng.standard_normal((B, 32, 32, 3)).astype(np.float32),
         "tokens": rng.integers(1, 98, (B, 1 + K, 16)).astype(np.int32)}
batch["tokens"][:, :, 7] = 99  # end of text


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


def run(mesh):
    state, shardings = train_step.create_train_state(config, optimizer, mesh, 0, K)
    step = train_step.make_train_step(config, optimizer, schedule, mesh, shardings)
    global_batch = sharding.make_global_batch(batch, mesh)
    grads_fn = jax.jit(jax.grad(lambda p, s, b, r: train_step.compute_losses(
        GroupViT(config), p, s, b, r, 1.0)[0]))
    with jax.set_mesh(mesh):
        grads = grads_fn(state.params, state.batch_stats, global_batch, jax.random.key(5))
        hlo = grads_fn.lower(state.params, state.batch_stats, global_batch,
                             jax.random.key(5)).compile().as_text()
    state, metrics = step(state, global_batch)
    state, metrics2 = step(state, global_batch)
    return {"grads": jax.tree.map(np.asarray, grads), "metrics": jax.tree.map(float, metrics),
            "metrics2": jax.tree.map(float, metrics2),
            "params": jax.tree.map(np.asarray, state.params),
            "batch_stats": jax.tree.map(np.asarray, state.batch_stats), "hlo": hlo}


single = run(sharding.make_mesh(1, jax.devices()[:1]))
report = {}
for name, model_axis in (("data8", 1), ("data4_model2", 2)):
    sharded = run(sharding.make_mesh(model_axis))
    rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
    report[name] = {
        "loss": [single["metrics"]["loss"], sharded["metrics"]["loss"]],
        "loss_step2": [single["metrics2"]["loss"], sharded["metrics2"]["loss"]],
        "metrics": [single["metrics"], sharded["metrics"]],
        # Gradients as one vector: several biases have gradients that are exactly zero
        # in exact arithmetic (a BatchNorm, LayerNorm or softmax follows), where only
        # rounding noise remains and a per-leaf relative error means nothing.
        "grads_rel": rel(flat(sharded["grads"]), flat(single["grads"])),
        "params_max_abs_diff": float(np.max(np.abs(flat(sharded["params"]) - flat(single["params"])))),
        "batch_stats_rel": max(jax.tree.leaves(jax.tree.map(rel, sharded["batch_stats"],
                                                            single["batch_stats"]))),
        # The multi-label logits are [B, B*K] = [24, 72] globally; sharded by rows they
        # appear per device as [3, 72] and never whole.
        "global_logits_in_hlo": f"f32[{B},{B * K}]" in sharded["hlo"],
        "local_logits_in_hlo": f"f32[{B // 8},{B * K}]" in sharded["hlo"],
    }
print("REPORT" + json.dumps(report))
