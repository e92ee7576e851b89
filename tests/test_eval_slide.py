"""Window geometry, overlap averaging, the protocol's resize rule and bilinear taps."""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from groupvit_jax.evaluation.resize import resize_bilinear, resize_for_protocol, upsample_bilinear
from groupvit_jax.evaluation.slide import Box, average_windows, window_boxes, window_starts
from input_pipeline.eval_readers import rescaled_size


@pytest.mark.parametrize("length, starts", [
    (300, [0]), (448, [0]), (449, [0, 1]), (597, [0, 149]), (672, [0, 224]),
    (673, [0, 224, 225]), (896, [0, 224, 448]), (897, [0, 224, 448, 449])])
def test_window_starts(length, starts):
    assert window_starts(length) == starts


def test_boxes_are_row_major_and_clipped_to_small_images():
    assert window_boxes(448, 673) == [Box(0, 0, 448, 448), Box(0, 224, 448, 448),
                                      Box(0, 225, 448, 448)]
    assert window_boxes(300, 449) == [Box(0, 0, 300, 448), Box(0, 1, 300, 448)]


@pytest.mark.parametrize("hw", [(300, 200), (448, 448), (448, 673), (673, 449), (897, 500)])
def test_averaging_matches_a_direct_computation(hw):
    rng = np.random.default_rng(0)
    boxes = window_boxes(*hw)
    # A fake scorer: every window gets its own random map of 3 scores per pixel.
    scores = [rng.random((b.height, b.width, 3), dtype=np.float32) for b in boxes]
    got = average_windows(scores, boxes, hw)
    want = np.zeros((*hw, 3))
    count = np.zeros(hw)
    for y in range(0, hw[0], 7):  # brute force over a lattice of pixels
        for x in range(0, hw[1], 5):
            for b, s in zip(boxes, scores):
                if b.top <= y < b.top + b.height and b.left <= x < b.left + b.width:
                    want[y, x] += s[y - b.top, x - b.left]
                    count[y, x] += 1
            assert count[y, x] >= 1
            np.testing.assert_allclose(got[y, x], want[y, x] / count[y, x], rtol=1e-6)
    # H=673 is covered three times by the rows starting at 224 and 225.
    if hw[0] == 673:
        assert count[301, 0] == 3


def test_averaging_refuses_uncovered_or_misshaped_windows():
    with pytest.raises(ValueError, match="do not cover"):
        average_windows([np.zeros((2, 2, 1), np.float32)], [Box(0, 0, 2, 2)], (3, 2))
    with pytest.raises(ValueError, match="score map of shape"):
        average_windows([np.zeros((2, 3, 1), np.float32)], [Box(0, 0, 2, 2)], (2, 2))


@pytest.mark.parametrize("hw, want", [
    ((375, 500), (448, 597)), ((500, 375), (597, 448)), ((333, 500), (448, 673)),
    ((448, 448), (448, 448)), ((100, 1000), (205, 2048)), ((1000, 100), (2048, 205)),
    ((896, 1001), (448, 501)),  # 500.5 rounds up (int(x + 0.5)), not to even
])
def test_protocol_size_rule(hw, want):
    assert rescaled_size(*hw, 448, 2048) == want
    image = np.random.default_rng(0).integers(0, 256, (*hw, 3), np.uint8)
    resized = resize_for_protocol(image)
    assert resized.shape == (*want, 3)
    np.testing.assert_array_equal(
        resized, cv2.resize(image, want[::-1], interpolation=cv2.INTER_LINEAR))


@pytest.mark.parametrize("src, dst", [((448, 597), (375, 500)), ((28, 28), (448, 448)),
                                      ((7, 9), (7, 20)), ((30, 40), (67, 91))])
def test_bilinear_matches_torch(src, dst):
    x = np.random.default_rng(1).random((*src, 5), dtype=np.float32)
    ref = F.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None].contiguous(), size=dst,
                        mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    got = resize_bilinear(x, dst)
    np.testing.assert_allclose(got, ref, rtol=0, atol=2.5e-7)
    np.testing.assert_allclose(np.asarray(upsample_bilinear(x[None], dst))[0], ref,
                               rtol=0, atol=2.5e-7)
    top2 = np.sort(ref, -1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 1e-6
    np.testing.assert_array_equal(got.argmax(-1)[clear], ref.argmax(-1)[clear])
