"""The segment-to-noun loss (a toy-world addition, not the paper's) on hand-made inputs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from groupvit_jax.models.model import GroupViT
from groupvit_jax.train import losses
from groupvit_jax.train import step as train_step
from groupvit_jax.train.extra_losses import ExtraLosses
from tests.tiny import tiny_config

S = 2.0  # small: float32 log-softmax near 0 would cost precision
E = np.eye(4, dtype=np.float32)


def _tokens(ids):
    return jnp.asarray(ids, jnp.int32).reshape(len(ids), -1, 1)


def test_separated_segments_exact_values():
    """Two images, two segments each, each segment equal to one of its image's prompts:
    every row puts cos 1 on its positive and 0 on the 3 other prompts."""
    seg = jnp.asarray(E.reshape(2, 2, 4))
    prompts = jnp.asarray(E.reshape(2, 2, 4))
    toks = _tokens([[0, 1], [2, 3]])
    one_way = np.log(1 + 3 * np.exp(-S))
    got = losses.segment_noun_contrastive(seg, prompts, toks, S, "batch", symmetric=False)
    np.testing.assert_allclose(got, one_way, rtol=1e-5)
    # text -> segment: prompt against each image's best segment (1 own, 0 other image)
    got = losses.segment_noun_contrastive(seg, prompts, toks, S, "batch", symmetric=True)
    np.testing.assert_allclose(got, 0.5 * (one_way + np.log(1 + np.exp(-S))), rtol=1e-5)
    got = losses.segment_noun_contrastive(seg, prompts, toks, S, "image")
    np.testing.assert_allclose(got, np.log(1 + np.exp(-S)), rtol=1e-5)


def test_one_segment_carrying_the_whole_scene_is_penalised():
    """Image 0's first segment holds both its objects ((p0 + p1) / sqrt 2), the second is
    empty-ish (orthogonal): both prompts pick the merged segment, which likes its own
    two prompts equally, so within the image the loss is exactly log 2."""
    merged = (E[0] + E[1]) / np.sqrt(2)
    seg = jnp.asarray(np.stack([merged, E[2]])[None])
    prompts = jnp.asarray(E[:2][None])
    got = losses.segment_noun_contrastive(seg, prompts, _tokens([[0, 1]]), S, "image")
    np.testing.assert_allclose(got, np.log(2), rtol=1e-6)
    # the same two prompts each held by its own segment: log(1 + e^-S)
    seg = jnp.asarray(E[:2][None])
    got = losses.segment_noun_contrastive(seg, prompts, _tokens([[0, 1]]), S, "image")
    np.testing.assert_allclose(got, np.log(1 + np.exp(-S)), rtol=1e-5)


def test_repeated_prompts_are_not_negatives():
    """The caption filling two slots (same token ids, same embedding): neither copy is a
    negative of the other; a different prompt with the same embedding still is."""
    seg = jnp.asarray(E[:2][None])
    prompts = jnp.asarray(np.stack([E[0], E[0]])[None])
    got = losses.segment_noun_contrastive(seg, prompts, _tokens([[5, 5]]), S, "image")
    np.testing.assert_allclose(got, 0.0, atol=1e-6)
    got = losses.segment_noun_contrastive(seg, prompts, _tokens([[5, 6]]), S, "image")
    np.testing.assert_allclose(got, np.log(2), rtol=1e-6)


def test_only_the_chosen_segment_gets_gradient():
    seg = jnp.asarray(np.stack([E[0] + 0.1 * E[1], E[2]])[None])
    prompts = jnp.asarray(np.stack([E[0], E[1]])[None])
    grad = jax.grad(losses.segment_noun_contrastive)(seg, prompts, _tokens([[0, 1]]), S,
                                                    "image")
    # both prompts pick segment 0 (cos to E[1]: 0.0995 > 0 for segment 1)
    assert np.abs(np.asarray(grad[0, 0])).sum() > 0
    np.testing.assert_array_equal(np.asarray(grad[0, 1]), 0.0)


def test_unknown_scope_refused():
    with pytest.raises(ValueError, match="scope"):
        losses.segment_noun_contrastive(jnp.ones((1, 2, 4)), jnp.ones((1, 2, 4)),
                                        _tokens([[0, 1]]), S, "everything")


def test_train_step_adds_the_weighted_term_and_leaves_the_paper_loss_alone():
    config = tiny_config(multi_label_scale=True)
    module = GroupViT(config)
    rng = np.random.default_rng(0)
    batch = {"images": jnp.asarray(rng.standard_normal((4, 32, 32, 3)), jnp.float32),
             "tokens": jnp.asarray(rng.integers(1, 100, (4, 4, 16)), jnp.int32)}
    variables = module.init(jax.random.key(0), batch["images"],
                            batch["tokens"].reshape(16, 16))
    args = (module, variables["params"], variables["batch_stats"], batch, jax.random.key(1), 1.0)
    base, (m0, _) = train_step.compute_losses(*args)
    total, (m1, _) = train_step.compute_losses(*args, ExtraLosses(segment_noun_weight=0.5))
    assert "loss_segment_noun" not in m0
    np.testing.assert_allclose(m1["loss_image_text"], m0["loss_image_text"], rtol=1e-6)
    np.testing.assert_allclose(total, base + 0.5 * m1["loss_segment_noun"], rtol=1e-6)
    # multi-label off, 0.1 * image-text
    light, _ = train_step.compute_losses(*args[:-1], 0.0, ExtraLosses(image_text_weight=0.1))
    np.testing.assert_allclose(light, 0.1 * m0["loss_image_text"], rtol=1e-6)


def test_prompts_naming_the_same_noun_are_not_negatives():
    """Image 1's prompt 0 names the same noun (token 7) as image 0's prompt 0, in another
    template (other token ids, another embedding): with noun_token_ids it is no negative
    of it, and image 1 is no negative of image 0's prompt 0 in the text -> segment term."""
    seg = jnp.asarray(E.reshape(2, 2, 4))
    prompts = jnp.asarray(E.reshape(2, 2, 4))
    toks = jnp.asarray([[[7, 1], [2, 3]], [[7, 4], [5, 6]]], jnp.int32)  # [B, K, L]
    plain = losses.segment_noun_contrastive(seg, prompts, toks, S, "batch", symmetric=False)
    np.testing.assert_allclose(plain, np.log(1 + 3 * np.exp(-S)), rtol=1e-5)
    got = losses.segment_noun_contrastive(seg, prompts, toks, S, "batch", symmetric=False,
                                          noun_token_ids=(7,))
    # rows (0, 0) and (1, 0) lose one negative each: 2 of 4 rows have 2 negatives
    expected = 0.5 * np.log(1 + 3 * np.exp(-S)) + 0.5 * np.log(1 + 2 * np.exp(-S))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    got = losses.segment_noun_contrastive(seg, prompts, toks, S, "batch", symmetric=True,
                                          noun_token_ids=(7,))
    # text -> segment: prompts (0, 0) and (1, 0) have no negative image left (loss 0)
    expected_txt = 0.5 * np.log(1 + np.exp(-S))
    np.testing.assert_allclose(got, 0.5 * (expected + expected_txt), rtol=1e-5)


def test_collapse_is_a_saddle_for_the_best_segment_and_the_soft_choice_leaves_it():
    """One segment nearest to both prompts (equally): with the best segment alone the two
    rows' gradients cancel on it and the other segment gets none; with a softmax over
    segments (tau > 0) the other segment, nearer to prompt 0, is pulled towards it."""
    merged = (E[0] + E[1]) / np.sqrt(2)
    other = 0.6 * E[0] + 0.8 * E[2]          # cos 0.6 to prompt 0, 0 to prompt 1
    seg = jnp.asarray(np.stack([merged, other])[None])
    prompts = jnp.asarray(E[:2][None])
    toks = _tokens([[0, 1]])
    np.testing.assert_allclose(
        losses.segment_noun_contrastive(seg, prompts, toks, S, "image"), np.log(2), rtol=1e-6)
    grad = jax.grad(losses.segment_noun_contrastive)(seg, prompts, toks, S, "image")
    np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-7)
    tau = 0.1
    got = losses.segment_noun_contrastive(seg, prompts, toks, S, "image", tau=tau)
    # row 0: weights softmax([1/sqrt2, 0.6] / tau); row 1: softmax([1/sqrt2, 0] / tau)
    w0 = np.exp(np.array([1 / np.sqrt(2), 0.6]) / tau); w0 /= w0.sum()
    w1 = np.exp(np.array([1 / np.sqrt(2), 0.0]) / tau); w1 /= w1.sum()
    nll_other_0 = np.log(1 + np.exp(-0.6 * S))     # other seg: 0.6 vs 0 -> prompt 0
    nll_other_1 = np.log(1 + np.exp(0.6 * S))
    expected = 0.5 * (w0[0] * np.log(2) + w0[1] * nll_other_0
                      + w1[0] * np.log(2) + w1[1] * nll_other_1)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    grad = jax.grad(losses.segment_noun_contrastive)(seg, prompts, toks, S, "image", tau=tau)
    assert np.dot(np.asarray(grad[0, 1]), E[0] - E[1]) < 0   # descent moves it to prompt 0
