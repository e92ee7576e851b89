"""Sliding-window inference geometry and overlap averaging, as mmseg's `slide_inference`.

Windows of 448 at stride 224; the last row/column of windows is snapped to the border
(so H=673 gives starts 0, 224, 225: a near-duplicate window that still counts). An image
smaller than the window in a dimension gets one window of its own size there.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

WINDOW = 448
STRIDE = 224


class Box(NamedTuple):
    top: int
    left: int
    height: int
    width: int


def window_starts(length: int, window: int = WINDOW, stride: int = STRIDE) -> list[int]:
    """Start offsets of the windows along one axis of `length` pixels."""
    if length < 1:
        raise ValueError(f"length must be positive, got {length}.")
    count = max(length - window + stride - 1, 0) // stride + 1
    return [max(min(i * stride, length - window), 0) for i in range(count)]


def window_boxes(height: int, width: int, window: int = WINDOW, stride: int = STRIDE
                 ) -> list[Box]:
    """The windows of an image, row-major (the order mmseg sums them in)."""
    return [Box(top, left, min(window, height), min(window, width))
            for top in window_starts(height, window, stride)
            for left in window_starts(width, window, stride)]


def average_windows(window_scores: Sequence[np.ndarray], boxes: Sequence[Box],
                    image_hw: tuple[int, int]) -> np.ndarray:
    """Per-window score maps [h, w, K] -> the image's [H, W, K] mean over covering windows.

    Summed in window order and divided by the per-pixel count, in float32, as mmseg.
    """
    if len(window_scores) != len(boxes) or not boxes:
        raise ValueError(f"need one score map per window, got {len(window_scores)} maps for "
                         f"{len(boxes)} windows.")
    total = np.zeros((*image_hw, window_scores[0].shape[-1]), np.float32)
    count = np.zeros((*image_hw, 1), np.float32)
    for scores, (top, left, h, w) in zip(window_scores, boxes):
        if scores.shape[:2] != (h, w):
            raise ValueError(f"window {(top, left, h, w)} got a score map of shape "
                             f"{scores.shape}.")
        total[top:top + h, left:left + w] += scores
        count[top:top + h, left:left + w] += 1
    if not count.all():
        raise ValueError(f"the windows do not cover the {image_hw} image.")
    return total / count
