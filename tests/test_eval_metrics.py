"""mIoU from dataset-level intersections and unions (mmseg's definition)."""
import json

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from groupvit_jax.evaluation.metrics import SegmentationMetric, format_table, write_json


def test_hand_computed_example():
    # 3 classes; class 2 is never predicted, one pixel is ignored.
    label = np.array([[0, 0, 1, 1],
                      [0, 2, 1, 255]])
    pred = np.array([[0, 1, 1, 1],
                     [0, 0, 1, 2]])
    metric = SegmentationMetric(["background", "cat", "dog"])
    metric.add(pred, label)
    # confusion [label, prediction]: bg->bg 2, bg->cat 1, cat->cat 3, dog->bg 1
    np.testing.assert_array_equal(metric.confusion, [[2, 1, 0], [0, 3, 0], [1, 0, 0]])
    r = metric.results()
    # IoU bg = 2 / (3 + 3 - 2) = 0.5, cat = 3 / (3 + 4 - 3) = 0.75, dog = 0 / (1 + 0 - 0)
    assert r["per_class"]["background"]["IoU"] == pytest.approx(50.0)
    assert r["per_class"]["cat"]["IoU"] == pytest.approx(75.0)
    assert r["per_class"]["dog"]["IoU"] == 0.0
    assert r["mIoU"] == pytest.approx(125 / 3)
    assert r["aAcc"] == pytest.approx(100 * 5 / 7)
    assert r["num_pixels"] == 7


def test_sums_over_images_before_dividing():
    metric = SegmentationMetric(["a", "b"])
    metric.add(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))  # image IoU(a) = 3/4
    metric.add(np.array([1]), np.array([0]))                    # image IoU(a) = 0
    assert metric.results()["per_class"]["a"]["IoU"] == pytest.approx(60.0)  # 3 / 5


def test_class_absent_everywhere_is_nan_and_left_out_of_the_mean(tmp_path):
    metric = SegmentationMetric(["background", "cat", "dog"])
    metric.add(np.array([0, 1, 1]), np.array([0, 1, 0]))
    r = metric.results()
    assert np.isnan(r["per_class"]["dog"]["IoU"])
    assert r["mIoU"] == pytest.approx((50.0 + 50.0) / 2)
    write_json(r, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text())["per_class"]["dog"]["IoU"] is None
    assert "dog" in format_table(r) and "mIoU 50.00" in format_table(r)


def test_against_sklearn_on_random_maps():
    rng = np.random.default_rng(0)
    n = 7
    metric = SegmentationMetric([str(i) for i in range(n)])
    labels, preds = [], []
    for _ in range(5):
        label = rng.integers(0, n, (31, 17))
        label[rng.random(label.shape) < 0.1] = 255
        pred = rng.integers(0, n, (31, 17))
        metric.add(pred, label)
        labels.append(label.ravel())
        preds.append(pred.ravel())
    label, pred = np.concatenate(labels), np.concatenate(preds)
    keep = label != 255
    expected = confusion_matrix(label[keep], pred[keep], labels=range(n))
    np.testing.assert_array_equal(metric.confusion, expected)
    inter = np.diag(expected)
    iou = inter / (expected.sum(0) + expected.sum(1) - inter)
    assert metric.results()["mIoU"] == pytest.approx(100 * iou.mean())


def test_out_of_range_values_are_errors():
    metric = SegmentationMetric(["a", "b"])
    with pytest.raises(ValueError, match=r"img.png: label values \[7\]"):
        metric.add(np.array([0, 1]), np.array([0, 7]), "img.png")
    with pytest.raises(ValueError, match="differ in shape"):
        metric.add(np.zeros((2, 2)), np.zeros((2, 3)))
