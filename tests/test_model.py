"""Behaviour of the Flax model: assignment modes, gradients, options, input checks."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from groupvit_jax.models.config import GroupViTConfig, one_stage
from groupvit_jax.models.model import GroupViT
from groupvit_jax.checkpoints.pretrained import abstract_variables
from tests.tiny import tiny_config

IMAGES = jnp.asarray(np.random.default_rng(0).standard_normal((2, 32, 32, 3)), jnp.float32)
TOKENS = jnp.asarray([[98, 5, 7, 99] + [0] * 12, [98, 3, 99] + [0] * 13], jnp.int32)


# Everything runs under jit: eager dispatch compiles every op separately and is slower.
# Compiling dominates, so each config's programs are compiled once for the whole module
# (configs are frozen dataclasses, hence cache keys) and its variables made once: tests
# only read them.
@functools.cache
def _init(config):
    return jax.jit(GroupViT(config).init)(jax.random.key(0), IMAGES, TOKENS)


@functools.cache
def _eval_fn(config):
    return jax.jit(lambda v, x: GroupViT(config).apply(v, x, method="encode_image"))


def _eval_image(config, variables, images=IMAGES):
    return _eval_fn(config)(variables, images)


@functools.cache
def _train_fn(config):
    @jax.jit
    def run(v, g, d):
        rngs = {"gumbel": jax.random.key(g), "droppath": jax.random.key(d)}
        return GroupViT(config).apply(v, IMAGES, train=True, rngs=rngs, mutable=["batch_stats"],
                                      method="encode_image")[0]
    return run


def _train_apply(config, variables, gumbel_seed=1, droppath_seed=2):
    return _train_fn(config)(variables, gumbel_seed, droppath_seed)


def test_released_architecture_has_55_7m_parameters():
    def count(cfg):
        return sum(x.size for x in jax.tree.leaves(abstract_variables(cfg)["params"]))
    assert count(GroupViTConfig()) == 55_726_610
    # HF-style models have no multi-label temperature: exactly one scalar fewer.
    assert count(GroupViTConfig(multi_label_scale=False)) == 55_726_609
    assert count(one_stage()) < count(GroupViTConfig())


def test_train_mode_uses_gumbel_noise_from_the_step_rng():
    config = tiny_config()
    variables = _init(config)
    a = _train_apply(config, variables, gumbel_seed=1)["hard_maps"][0]
    b = _train_apply(config, variables, gumbel_seed=1)["hard_maps"][0]
    c = _train_apply(config, variables, gumbel_seed=7)["hard_maps"][0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.argmax(a, 1), np.argmax(c, 1))


@pytest.mark.parametrize("train", [True, False])
def test_forward_assignment_is_one_hot_per_token(train):
    config = tiny_config()
    variables = _init(config)
    out = _train_apply(config, variables) if train else _eval_image(config, variables)
    for hard, soft in zip(out["hard_maps"], out["soft_maps"]):
        hard = np.asarray(hard)
        np.testing.assert_allclose(hard.sum(axis=1), 1.0, atol=1e-6)
        assert np.all((np.abs(hard) < 1e-6) | (np.abs(hard - 1) < 1e-6))
        np.testing.assert_allclose(np.asarray(soft).sum(axis=1), 1.0, atol=1e-5)
        if not train:  # without noise the hard map is the argmax of the soft map
            np.testing.assert_array_equal(hard.argmax(1), np.asarray(soft).argmax(1))


def test_gradient_flows_through_the_soft_assignment():
    """The assignment query only reaches the output through the assignment, which is a
    one-hot in the forward pass: a non-zero gradient proves the straight-through path."""
    config = tiny_config()
    variables = _init(config)

    def loss(params):
        out = GroupViT(config).apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, IMAGES, train=True,
            rngs={"gumbel": jax.random.key(1), "droppath": jax.random.key(2)},
            mutable=["batch_stats"], method="encode_image")[0]
        return jnp.sum(jnp.square(out["image_embeds"]))

    grads = jax.jit(jax.grad(loss))(variables["params"])
    g = grads["image_tower"]["stage_0"]["grouping"]["assign"]["q"]["kernel"]
    assert float(jnp.abs(g).max()) > 0.0


def test_soft_assignment_switch():
    config = tiny_config(vision={"hard_assignment": False})
    variables = _init(config)
    out = _eval_image(config, variables)
    np.testing.assert_allclose(out["hard_maps"][0], out["soft_maps"][0], rtol=1e-6)
    assert float(jnp.max(out["hard_maps"][0])) < 1.0


def test_stochastic_depth_only_in_training():
    config = tiny_config(vision={"drop_path_rate": 0.9})
    variables = _init(config)
    e1 = _eval_image(config, variables)["image_embeds"]
    e2 = _eval_image(config, variables)["image_embeds"]
    np.testing.assert_array_equal(e1, e2)
    tokens_a = _train_apply(config, variables, droppath_seed=2)["segment_tokens"]
    tokens_b = _train_apply(config, variables, droppath_seed=3)["segment_tokens"]
    assert not np.allclose(tokens_a, tokens_b)


def test_batchnorm_running_statistics_follow_pytorch():
    config = tiny_config()
    variables = _init(config)
    _, updates = GroupViT(config).apply(variables, TOKENS, train=True, mutable=["batch_stats"],
                                        method="encode_text")
    features = GroupViT(config).apply(variables, TOKENS, method="encode_text")["text_features"]
    params = variables["params"]["text_head"]["fc1"]
    hidden = np.asarray(features @ params["kernel"] + params["bias"], np.float64)
    stats = updates["batch_stats"]["text_head"]["bn"]
    np.testing.assert_allclose(stats["mean"], 0.1 * hidden.mean(0), rtol=1e-5, atol=1e-7)
    # PyTorch keeps the UNBIASED variance in its running average.
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * hidden.var(0, ddof=1), rtol=1e-5)


def test_remat_gives_the_same_gradients():
    def grads(remat):
        config = tiny_config(remat=remat)
        variables = _init(tiny_config())

        def loss(params):
            out = GroupViT(config).apply({"params": params, "batch_stats": variables["batch_stats"]},
                                         IMAGES, TOKENS)
            return jnp.sum(out["image_embeds"] ** 2) + jnp.sum(out["text_embeds"] ** 2)
        return jax.jit(jax.grad(loss))(variables["params"])
    # Remat changes XLA's fusion, hence rounding: compare at float32 noise level.
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                         atol=1e-5 * float(np.abs(a).max())),
                 grads(False), grads(True))


def test_bfloat16_compute_keeps_float32_parameters():
    config = tiny_config(dtype="bfloat16")
    variables = _init(config)
    assert {x.dtype for x in jax.tree.leaves(variables["params"])} == {jnp.dtype("float32")}
    model = GroupViT(config)
    jaxpr = str(jax.make_jaxpr(lambda v: model.apply(v, IMAGES, method="encode_image"))(variables))
    assert "bf16" in jaxpr and "preferred_element_type=bfloat16" in jaxpr
    out = _eval_image(config, variables)["image_embeds"]
    ref = _eval_image(tiny_config(), variables)["image_embeds"]
    assert not np.array_equal(np.asarray(out, np.float32), ref)
    np.testing.assert_allclose(np.asarray(out, np.float32), ref,
                               atol=0.1 * float(jnp.abs(ref).max()))


def test_any_multiple_of_the_patch_size_and_aspect_ratio():
    config = tiny_config()
    variables = _init(config)
    out = _eval_image(config, variables, jnp.zeros((1, 48, 72, 3)))
    assert out["soft_maps"][0].shape == (1, 8, 6 * 9)
    assert out["soft_maps"][1].shape == (1, 4, 8)
    assert out["segment_embeds"].shape == (1, 4, 16)


def test_a_plain_vit_has_its_patch_tokens_as_segments():
    config = tiny_config(vision={"depths": (2,), "num_group_tokens": (0,),
                                 "num_output_groups": ()})
    assert config.vision.num_segments == 16  # a 4x4 patch grid
    variables = _init(config)
    out = _eval_image(config, variables)
    assert out["soft_maps"] == [] and out["hard_maps"] == []
    assert out["segment_tokens"].shape == (2, 16, 64) and out["segment_embeds"].shape == (2, 16, 16)
    np.testing.assert_allclose(out["image_features"], out["segment_tokens"].mean(1), rtol=1e-6)
    embeds = GroupViT(config).apply(variables, out["segment_tokens"], method="embed_segments")
    # Two compiled programs (eager here, one jit above): equal up to float32 rounding.
    np.testing.assert_allclose(embeds, out["segment_embeds"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("images, message", [
    (jnp.zeros((32, 32, 3)), "must be \\[B, H, W, 3\\]"),
    (jnp.zeros((1, 3, 32, 32)), "3 channels"),
    (jnp.zeros((1, 36, 32, 3)), "multiple of the patch size 8"),
])
def test_bad_images_are_named(images, message):
    config = tiny_config()
    variables = _init(config)
    with pytest.raises(ValueError, match=message):
        GroupViT(config).apply(variables, images, method="encode_image")


def test_bad_tokens_are_named():
    config = tiny_config()
    variables = _init(config)
    model = GroupViT(config)
    with pytest.raises(ValueError, match="longer than the model's context of 16"):
        model.apply(variables, jnp.zeros((1, 17), jnp.int32), method="encode_text")
    with pytest.raises(ValueError, match="must be \\[N, L\\]"):
        model.apply(variables, jnp.zeros((17,), jnp.int32), method="encode_text")
    with pytest.raises(ValueError, match="integer ids"):
        model.apply(variables, jnp.zeros((1, 4), jnp.float32), method="encode_text")


def test_config_rejects_unknown_keys_and_inconsistent_stages():
    with pytest.raises(ValueError, match="Unknown vision config keys \\['widht'\\]"):
        GroupViTConfig.from_dict({"vision": {"widht": 3}})
    with pytest.raises(ValueError, match="num_output_groups"):
        GroupViTConfig.from_dict({"vision": {"num_output_groups": [64, 8, 8]}})
    cfg = GroupViTConfig()
    assert GroupViTConfig.from_dict(cfg.to_dict()) == cfg
