"""Evaluation-side reading: decode images, resize the short side, split work over hosts.

Evaluation reads plain files (no records, no augmentation), decoded with OpenCV as
the released evaluation did (mmcv's `imfrombytes`, flag "color"), so pixels match it.
"""
from __future__ import annotations

import os
from typing import Iterator, Sequence, TypeVar

import cv2
import numpy as np

from input_pipeline import paths

T = TypeVar("T")


def decode_image(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Encoded JPEG/PNG/... bytes -> RGB uint8 [H, W, 3].

    Grayscale is replicated to three channels, alpha dropped, 16-bit scaled to 8
    (OpenCV's IMREAD_COLOR does all three).
    """
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{source}: not a decodable image ({len(data)} bytes).")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file (local or gs://) -> RGB uint8 [H, W, 3]; see `decode_image`."""
    return decode_image(paths.as_path(path).read_bytes(), str(path))


def rescaled_size(height: int, width: int, short_side: int, long_side_max: int
                  ) -> tuple[int, int]:
    """(height, width) scaled so the short side is `short_side`, unless that makes the
    long side exceed `long_side_max` (then the long side is `long_side_max`).

    Rounds half up, int(side * scale + 0.5), as mmcv's `rescale_size` does.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}.")
    scale = min(long_side_max / max(height, width), short_side / min(height, width))
    return int(height * scale + 0.5), int(width * scale + 0.5)


def resize_short_side(image: np.ndarray, short_side: int, long_side_max: int) -> np.ndarray:
    """uint8 [H, W, C] -> resized with OpenCV's bilinear (INTER_LINEAR, fixed-point on
    uint8), to the size `rescaled_size` gives."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected a uint8 [H, W, C] image, got {image.dtype} {image.shape}.")
    h, w = rescaled_size(image.shape[0], image.shape[1], short_side, long_side_max)
    if (h, w) == image.shape[:2]:
        return image
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)


def host_share(items: Sequence[T], process_index: int, process_count: int
               ) -> list[tuple[T, bool]]:
    """This host's items (every `process_count`-th from `process_index`), as
    (item, valid) pairs padded with (items[0], False) so every host gets the same count.

    Deterministic: the same items, order and padding on every run; the union of the
    valid items over all hosts is `items`, each once.
    """
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count}).")
    if not items:
        return []
    per_host = -(-len(items) // process_count)
    mine = [(item, True) for item in items[process_index::process_count]]
    return mine + [(items[0], False)] * (per_host - len(mine))


def batches(pairs: Sequence[tuple[T, bool]], batch_size: int
            ) -> Iterator[tuple[list[T], np.ndarray]]:
    """(items, valid mask) batches of exactly `batch_size`; the last one is padded with
    invalid copies of the first item, so every host runs the same number of batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    for start in range(0, len(pairs), batch_size):
        chunk = list(pairs[start:start + batch_size])
        chunk += [(pairs[0][0], False)] * (batch_size - len(chunk))
        yield [item for item, _ in chunk], np.array([valid for _, valid in chunk])
