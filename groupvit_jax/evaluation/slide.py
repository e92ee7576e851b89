"""Sliding-window geometry, as mmseg's `slide_inference` places its windows.

Windows of 448 at stride 224 (or a Scale's); the last row/column of windows is snapped to the border
(so H=673 gives starts 0, 224, 225: a near-duplicate window that still counts). An image
smaller than the window in a dimension gets one window of its own size there.
"""
from __future__ import annotations

from typing import NamedTuple

from groupvit_jax.evaluation.resize import RELEASED

WINDOW = RELEASED.window
STRIDE = RELEASED.stride


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
