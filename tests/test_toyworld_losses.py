"""The toy world's additions to the losses (issue 11), on hand-made cases with exact
expected values."""
import jax.numpy as jnp
import numpy as np
import pytest

from groupvit_jax.train import losses


def test_segment_multi_label_takes_each_prompt_from_the_best_segment():
    # Two images of two segments each, one prompt each (K=1), 2-d unit embeddings.
    # Image 0: segments along x and y; image 1: segments along y and -x.
    segments = jnp.array([[[1.0, 0.0], [0.0, 1.0]],
                          [[0.0, 1.0], [-1.0, 0.0]]])
    prompts = jnp.array([[[1.0, 0.0]], [[0.0, 2.0]]])   # un-normalised on purpose
    # Best-segment cosines: image 0 -> (1, 1); image 1 -> (0, 1).
    sim = np.array([[1.0, 1.0], [0.0, 1.0]])
    scale = 10.0

    def logsm(x):
        return x - np.log(np.exp(x).sum(-1, keepdims=True))
    img = -(logsm(scale * sim)[0, 0] + logsm(scale * sim)[1, 1]) / 2
    txt = -(logsm(scale * sim.T)[0, 0] + logsm(scale * sim.T)[1, 1]) / 2
    expected = 0.5 * (img + txt)
    got = losses.segment_multi_label_contrastive(segments, prompts, scale)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # Numbers: img = (log 2 + log(1 + e^-10)) / 2, txt = (log(1 + e^-10) + log 2) / 2.
    np.testing.assert_allclose(got, np.log(2) / 2 + np.log1p(np.exp(-10)) / 2, rtol=1e-6)


def test_segment_multi_label_with_one_segment_is_the_image_level_loss():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(4, 8)).astype(np.float32)
    prompts = rng.normal(size=(4, 3, 8)).astype(np.float32)
    np.testing.assert_allclose(
        losses.segment_multi_label_contrastive(image[:, None], prompts, 14.0),
        losses.multi_label_contrastive(image, prompts, 14.0), rtol=1e-6)


def test_group_balance_is_one_when_uniform_and_G_when_collapsed():
    # One image, G=4 groups, N=8 tokens.
    uniform_soft = jnp.full((1, 4, 8), 0.25)
    uniform_hard = jnp.tile(jnp.eye(4), (1, 2))[None]           # two tokens per group
    assert float(losses.group_balance(uniform_soft, uniform_hard)) == pytest.approx(1.0)
    collapsed = jnp.zeros((1, 4, 8)).at[:, 0].set(1.0)          # every token in group 0
    assert float(losses.group_balance(collapsed, collapsed)) == pytest.approx(4.0)


def test_group_balance_hand_case_and_its_gradient_only_through_the_soft_map():
    import jax
    # G=2, N=2: tokens go to group 0 and 0 (f = (1, 0)); soft p = (0.75, 0.25).
    soft = jnp.array([[[0.9, 0.6], [0.1, 0.4]]])
    hard = jnp.array([[[1.0, 1.0], [0.0, 0.0]]])
    assert float(losses.group_balance(soft, hard)) == pytest.approx(2 * 0.75)
    grad_soft, grad_hard = jax.grad(losses.group_balance, argnums=(0, 1))(soft, hard)
    # d/d soft[g, n] = G * f_g / N = 1 for group 0, 0 for group 1; nothing through hard.
    np.testing.assert_allclose(grad_soft, [[[1.0, 1.0], [0.0, 0.0]]])
    np.testing.assert_allclose(grad_hard, 0.0)


def test_mosaic_tiles_four_halved_images_in_reading_order():
    # 4 images of 4x4, image i constant i (one channel): mosaic = [[0, 1], [2, 3]] blocks.
    images = jnp.arange(4.0)[:, None, None, None] * jnp.ones((4, 4, 4, 1))
    images = images.at[0, 0, 0, 0].set(4.0)          # one pixel: its 2x2 block averages to 1
    mosaic = losses.make_mosaics(images)
    assert mosaic.shape == (1, 4, 4, 1)
    np.testing.assert_allclose(mosaic[0, :, :, 0], [[1, 0, 1, 1],
                                                    [0, 0, 1, 1],
                                                    [2, 2, 3, 3],
                                                    [2, 2, 3, 3]])


def test_quadrant_pooling_weights_segments_by_their_share_of_each_quadrant():
    # One mosaic, a 2x2 patch grid (one patch per quadrant), one stage of 2 segments:
    # segment 0 holds TL, TR, BL; segment 1 holds BR.
    assign = jnp.array([[[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]])
    segments = jnp.array([[[1.0, 0.0], [0.0, 1.0]]])
    got = losses.quadrant_pooling([assign], segments, grid=2)
    np.testing.assert_allclose(got, [[1, 0], [1, 0], [1, 0], [0, 1]])
    # Two stages on a 4x4 grid: 16 patches -> 2 groups (left half / right half) -> one
    # segment for the left group, another for the right one, swapped by stage 2.
    left = jnp.tile(jnp.array([1.0, 1.0, 0.0, 0.0]), 4)
    stage1 = jnp.stack([left, 1 - left])[None]                       # [1, 2, 16]
    stage2 = jnp.array([[[0.0, 1.0], [1.0, 0.0]]])                    # group g -> segment 1-g
    segments = jnp.array([[[2.0, 0.0], [0.0, 4.0]]])
    got = losses.quadrant_pooling([stage1, stage2], segments, grid=4)
    np.testing.assert_allclose(got, [[0, 4], [2, 0], [0, 4], [2, 0]])
    # A segment straddling a quadrant border shares it: half of TL from each segment.
    stage1 = jnp.zeros((1, 2, 16)).at[0, 0].set(1.0)
    stage1 = stage1.at[0, :, 0:2].set(jnp.array([[0.0, 0.0], [1.0, 1.0]]))
    got = losses.quadrant_pooling([stage1], jnp.array([[[1.0, 0.0], [0.0, 1.0]]]), grid=4)
    np.testing.assert_allclose(got[0], [0.5, 0.5])
    np.testing.assert_allclose(got[1:], [[1, 0]] * 3)


def test_group_infomax_zero_when_sure_and_even_one_when_collapsed_or_flat():
    sure_even = jnp.tile(jnp.eye(4), (1, 2))[None]                  # [1, 4, 8]
    assert float(losses.group_infomax(sure_even)) == pytest.approx(0.0, abs=1e-6)
    collapsed = jnp.zeros((1, 4, 8)).at[:, 0].set(1.0)
    assert float(losses.group_infomax(collapsed)) == pytest.approx(1.0, abs=1e-6)
    flat = jnp.full((1, 4, 8), 0.25)
    assert float(losses.group_infomax(flat)) == pytest.approx(1.0, abs=1e-6)
    # Hand case, G=2, N=2: tokens (0.5, 0.5) and (1, 0): token entropies (log 2, 0),
    # mean usage (0.75, 0.25).
    soft = jnp.array([[[0.5, 1.0], [0.5, 0.0]]])
    usage_h = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    expected = (0.5 * np.log(2) - usage_h) / np.log(2) + 1
    assert float(losses.group_infomax(soft)) == pytest.approx(expected, rel=1e-5)
