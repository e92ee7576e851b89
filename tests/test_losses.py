"""The losses against an independent NumPy transcription of the released formulas."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from groupvit_jax.train import losses


def _np_normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _np_soft_ce(logits, targets):
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return np.mean(np.sum(-targets * logp, axis=-1))


def np_image_text(img, txt, scale):
    img, txt = _np_normalize(img), _np_normalize(txt)
    eye = np.eye(len(img))
    return 0.5 * (_np_soft_ce(scale * img @ txt.T, eye) + _np_soft_ce(scale * txt @ img.T, eye))


def np_multi_label(img, prompts, scale):
    """Written from the released code's loss definitions, with dense target matrices."""
    b, k, d = prompts.shape
    img, p = _np_normalize(img), _np_normalize(prompts).reshape(b * k, d)
    targets_img = np.zeros((b, b * k))
    targets_txt = np.zeros((b * k, b))
    for i in range(b):
        for j in range(k):
            targets_img[i, i * k + j] = 1.0 / k
            targets_txt[i * k + j, i] = 1.0
    return 0.5 * (_np_soft_ce(scale * img @ p.T, targets_img)
                  + _np_soft_ce(scale * p @ img.T, targets_txt))


@pytest.mark.parametrize("b, scale", [(1, 14.28), (6, 14.28), (16, 100.0)])
def test_image_text_matches_numpy(b, scale):
    rng = np.random.default_rng(b)
    img, txt = rng.standard_normal((b, 8)), rng.standard_normal((b, 8))
    got = losses.image_text_contrastive(jnp.asarray(img), jnp.asarray(txt), scale)
    np.testing.assert_allclose(got, np_image_text(img, txt, scale), rtol=1e-5)


@pytest.mark.parametrize("b, k", [(5, 1), (5, 3), (8, 4)])
def test_multi_label_matches_numpy(b, k):
    rng = np.random.default_rng(10 * b + k)
    img, prompts = rng.standard_normal((b, 8)), rng.standard_normal((b, k, 8))
    got = losses.multi_label_contrastive(jnp.asarray(img), jnp.asarray(prompts), 10.0)
    np.testing.assert_allclose(got, np_multi_label(img, prompts, 10.0), rtol=1e-5)


def test_multi_label_prompts_repeating_the_caption():
    """Captions with fewer nouns than K fill the slots with the caption itself: identical
    prompts within an image are each worth 1/K, and other images' copies stay negatives."""
    rng = np.random.default_rng(0)
    img, caption = rng.standard_normal((4, 8)), rng.standard_normal((4, 1, 8))
    prompts = np.repeat(caption, 3, axis=1)
    prompts[0, 0] = rng.standard_normal(8)
    got = losses.multi_label_contrastive(jnp.asarray(img), jnp.asarray(prompts), 20.0)
    np.testing.assert_allclose(got, np_multi_label(img, prompts, 20.0), rtol=1e-5)


def test_losses_ignore_embedding_norms_and_have_exact_known_values():
    # Perfectly separated orthogonal embeddings: each row's softmax puts
    # e^s / (e^s + (B-1)) on its positive.
    b, s = 4, 10.0
    img = 3.0 * jnp.eye(b)
    expected = -np.log(np.exp(s) / (np.exp(s) + b - 1))
    np.testing.assert_allclose(losses.image_text_contrastive(img, jnp.eye(b), s), expected,
                               rtol=1e-6, atol=1e-7)  # float32 log-softmax near 0
    stats = losses.similarity_stats(img, jnp.eye(b))
    assert float(stats["pos_similarity"]) == pytest.approx(1.0)
    assert float(stats["neg_similarity"]) == pytest.approx(0.0)


def test_gradients_match_numpy_finite_differences():
    rng = np.random.default_rng(3)
    img, prompts = rng.standard_normal((3, 4)), rng.standard_normal((3, 2, 4))
    with jax.enable_x64(True):
        g = jax.grad(losses.multi_label_contrastive)(jnp.asarray(img), jnp.asarray(prompts), 5.0)
        eps = 1e-6
        bumped = img.copy()
        bumped[1, 2] += eps
        fd = (np_multi_label(bumped, prompts, 5.0) - np_multi_label(img, prompts, 5.0)) / eps
        np.testing.assert_allclose(g[1, 2], fd, rtol=1e-4)
