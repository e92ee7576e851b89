"""Window geometry, overlap averaging and resizing back, the protocol's resize rule, and
the bilinear taps."""
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from groupvit_jax.evaluation.assemble import label_map, region_ids, region_means
from groupvit_jax.evaluation.resize import bilinear_taps, resize_for_protocol, upsample_bilinear
from groupvit_jax.evaluation.slide import Box, window_boxes, window_starts
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


def _fake_windows(boxes, seed=0, groups=8, classes=4):
    """A fake per-window scorer: blocky random group maps and random group tables."""
    rng = np.random.default_rng(seed)
    maps, tables = [], []
    for b in boxes:
        blocks = rng.integers(0, groups, (-(-b.height // 16), -(-b.width // 16)))
        maps.append(np.kron(blocks, np.ones((16, 16), np.int64))[:b.height, :b.width]
                    .astype(np.uint8))
        tables.append(rng.random((groups, classes), dtype=np.float32))
    return maps, tables


def _dense_average(maps, tables, boxes, hw):
    """mmseg's way: add every window's full score map in window order, divide by counts."""
    total = np.zeros((*hw, tables[0].shape[-1]), np.float32)
    count = np.zeros((*hw, 1), np.float32)
    for g, t, (top, left, h, w) in zip(maps, tables, boxes):
        total[top:top + h, left:left + w] += t[g]
        count[top:top + h, left:left + w] += 1
    return total / count, count[..., 0]


@pytest.mark.parametrize("hw", [(300, 200), (448, 448), (448, 673), (673, 449), (897, 500)])
def test_region_means_equal_the_dense_average_bit_for_bit(hw):
    boxes = window_boxes(*hw)
    maps, tables = _fake_windows(boxes)
    ids, codes = region_ids(maps, boxes, hw)
    dense, count = _dense_average(maps, tables, boxes, hw)
    np.testing.assert_array_equal(region_means(codes, tables)[ids], dense)
    assert count.min() >= 1
    if hw[0] == 673:  # rows 225..447 lie in the windows starting at 0, 224 and 225
        assert count[300, 0] == 3 and count[224, 0] == 2 and count[100, 0] == 1


@pytest.mark.parametrize("hw, out", [((448, 597), (375, 500)), ((448, 673), (333, 500)),
                                     ((448, 448), (448, 448)), ((300, 449), (311, 466))])
def test_label_map_equals_dense_average_then_torch_resize(hw, out):
    boxes = window_boxes(*hw)
    maps, tables = _fake_windows(boxes, seed=1, classes=21)
    dense, _ = _dense_average(maps, tables, boxes, hw)
    scores = F.interpolate(torch.from_numpy(dense).permute(2, 0, 1)[None].contiguous(),
                           size=out, mode="bilinear", align_corners=False)[0].numpy()
    top2 = np.sort(scores, 0)[-2:]
    clear = top2[1] - top2[0] > 1e-6
    got = label_map(maps, tables, boxes, hw, out)
    assert got.shape == out and got.dtype == np.int32 and clear.mean() > 0.99
    np.testing.assert_array_equal(got[clear], scores.argmax(0)[clear])


def test_uncovered_or_misshaped_windows_are_errors():
    with pytest.raises(ValueError, match="do not cover"):
        region_ids([np.zeros((2, 2), np.uint8)], [Box(0, 0, 2, 2)], (3, 2))
    with pytest.raises(ValueError, match="group map of shape"):
        region_ids([np.zeros((2, 3), np.uint8)], [Box(0, 0, 2, 2)], (2, 2))


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
def test_bilinear_taps_and_upsampling_match_torch(src, dst):
    x = np.random.default_rng(1).random((*src, 5), dtype=np.float32)
    ref = F.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None].contiguous(), size=dst,
                        mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    got = np.asarray(upsample_bilinear(x[None], dst))[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=2.5e-7)
    # The taps are PyTorch's exactly: probe them with one-hot rows.
    y0, y1, w0, w1 = bilinear_taps(src[1], dst[1])
    eye = torch.eye(src[1])[:, None, None, :]
    probe = F.interpolate(eye, size=(1, dst[1]), mode="bilinear", align_corners=False)
    probe = probe[:, 0, 0].T.numpy()  # [out, in]: the weight of each source column
    np.testing.assert_array_equal(probe[np.arange(dst[1]), y0], np.where(y0 == y1, 1, w0))
    moved = y1 != y0
    np.testing.assert_array_equal(probe[np.arange(dst[1]), y1][moved], w1[moved])
