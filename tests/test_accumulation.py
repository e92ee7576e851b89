"""Gradient accumulation keeps the global-batch contrastive loss (gradient caching)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from groupvit_jax.train import step as train_step
from groupvit_jax.models.model import GroupViT
from tests.tiny import tiny_config

B, K = 8, 2


@pytest.mark.parametrize("accum_steps", [2, 4])
def test_cached_gradients_equal_direct_autodiff(accum_steps):
    config = tiny_config()
    module = GroupViT(config)
    rng = np.random.default_rng(0)
    batch = {"images": jnp.asarray(rng.standard_normal((B, 32, 32, 3)), jnp.float32),
             "tokens": jnp.asarray(rng.integers(1, 98, (B, 1 + K, 16)), jnp.int32).at[:, :, 9].set(99)}
    variables = jax.jit(module.init)(jax.random.key(0), batch["images"][:2],
                                     batch["tokens"][:2, 0])
    key = jax.random.key(3)

    def direct(params):
        """The same objective differentiated end to end: every micro-batch's forward
        (its own BatchNorm statistics and noise), one loss over the whole batch."""
        images = train_step._micro(batch["images"], accum_steps)
        tokens = train_step._micro(batch["tokens"], accum_steps)
        parts = [train_step.embed(module, params, variables["batch_stats"], images[j], tokens[j],
                                  jax.random.fold_in(key, j))[0] for j in range(accum_steps)]
        image = train_step._unmicro(jnp.stack([p[0] for p in parts]))
        text = train_step._unmicro(jnp.stack([p[1] for p in parts]))
        temps = module.apply({"params": params}, method="temperatures")
        return train_step.contrastive_losses(image, text, temps, 1.0)[0]

    loss, expected = jax.jit(jax.value_and_grad(direct))(variables["params"])
    metrics, _, grads = jax.jit(lambda p: train_step.accumulated_grads(
        module, p, variables["batch_stats"], batch, key, 1.0, accum_steps))(variables["params"])
    assert float(metrics["loss"]) == pytest.approx(float(loss), rel=1e-6)
    flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)])
    g, e = flat(grads), flat(expected)
    assert np.max(np.abs(g - e)) < 1e-5 * np.max(np.abs(e))


def test_micro_batches_interleave_and_restore_order():
    x = jnp.arange(12)
    micro = train_step._micro(x, 3)
    np.testing.assert_array_equal(micro[0], [0, 3, 6, 9])
    np.testing.assert_array_equal(train_step._unmicro(micro), x)
