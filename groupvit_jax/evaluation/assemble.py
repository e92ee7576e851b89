"""From per-window group maps and group score tables to the image's label map.

mmseg averages the windows' [K, h, w] score maps over the resized image, resizes the
average bilinearly to the original size and takes the argmax. Every window's score map
is a lookup (`table[group]`), so the average takes one value per *region*: a set of
pixels covered by the same windows with the same group in each. We compute the mean
once per region (same float32 additions in window order as mmseg's), and resample only
where the four source pixels of an output pixel lie in different regions; elsewhere
the bilinear blend of one vector keeps its argmax. (mmseg's softmax over classes before
its argmax is monotone: it can only merge ties.) The label maps equal the dense
computation except at float32 ties.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from groupvit_jax.evaluation.resize import bilinear_taps
from groupvit_jax.evaluation.slide import Box


def region_ids(groups: Sequence[np.ndarray], boxes: Sequence[Box], hw: tuple[int, int]
               ) -> tuple[np.ndarray, np.ndarray]:
    """(ids int [H, W] numbering the regions, codes [R, num_windows]: per region, each
    window's group, or -1 where the window does not cover it)."""
    base = max(int(g.max(initial=0)) for g in groups) + 2  # digit 0 = not covered
    ids = np.zeros(hw, np.int64)
    codes = np.zeros((1, 0), np.int64)
    for g, (top, left, h, w) in zip(groups, boxes):
        if g.shape != (h, w):
            raise ValueError(f"window {(top, left, h, w)} got a group map of shape {g.shape}.")
        # Split every region by this window's digit, then renumber densely (no sort:
        # the table has only regions x base entries).
        ids *= base
        ids[top:top + h, left:left + w] += g + 1
        present = np.zeros(len(codes) * base, bool)
        present[ids] = True
        kept = np.flatnonzero(present)
        renumber = np.zeros(len(present), np.int64)
        renumber[kept] = np.arange(len(kept))
        ids = renumber[ids]
        codes = np.concatenate([codes[kept // base], kept[:, None] % base - 1], axis=1)
    if (codes < 0).all(1).any():
        raise ValueError(f"the windows do not cover the {hw} image.")
    return ids, codes


def region_means(codes: np.ndarray, tables: Sequence[np.ndarray]) -> np.ndarray:
    """[R, K] mean score of each region over the windows covering it (float32, summed
    in window order then divided by the count, as mmseg)."""
    total = np.zeros((len(codes), tables[0].shape[-1]), np.float32)
    count = np.zeros((len(codes), 1), np.float32)
    for w, table in enumerate(tables):
        covered = codes[:, w] >= 0
        total[covered] += table[codes[covered, w]]
        count[covered] += 1
    return total / count


def label_map(groups: Sequence[np.ndarray], tables: Sequence[np.ndarray],
              boxes: Sequence[Box], resized_hw: tuple[int, int],
              out_hw: tuple[int, int]) -> np.ndarray:
    """Window group maps ([h, w] ints) and tables ([S, K]) -> int32 [out_h, out_w] labels."""
    ids, codes = region_ids(groups, boxes, resized_hw)
    means = region_means(codes, tables)
    (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) = (bilinear_taps(resized_hw[0], out_hw[0]),
                                              bilinear_taps(resized_hw[1], out_hw[1]))
    ids = ids.astype(np.int32)
    top_rows, bottom_rows = ids[y0], ids[y1]
    a, b, c, d = top_rows[:, x0], top_rows[:, x1], bottom_rows[:, x0], bottom_rows[:, x1]
    labels = means.argmax(-1).astype(np.int32)[a]
    mixed = (a != b) | (a != c) | (a != d)
    rows, cols = np.nonzero(mixed)
    wx0, wx1 = wx0[cols, None], wx1[cols, None]
    top = means[a[mixed]] * wx0 + means[b[mixed]] * wx1
    bottom = means[c[mixed]] * wx0 + means[d[mixed]] * wx1
    labels[mixed] = (top * wy0[rows, None] + bottom * wy1[rows, None]).argmax(-1)
    return labels
