"""Dataset-level mIoU as mmseg computes it: intersections and unions summed over the
dataset (not averaged per image), label 255 ignored, background counted as a class.

A class absent from both predictions and labels has union 0: its IoU is nan and it is
left out of the mean (mmseg's `np.nanmean`); one present in either counts, 0 if missed.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from input_pipeline import cli

IGNORE_LABEL = 255


class SegmentationMetric:
    """Accumulates a confusion matrix over images; `add` per image, `results` at the end."""

    def __init__(self, class_names: Sequence[str]):
        self.class_names = tuple(class_names)
        n = len(self.class_names)
        self.confusion = np.zeros((n, n), np.int64)  # [label, prediction]

    def add(self, prediction: np.ndarray, label: np.ndarray, source: str = "") -> None:
        """One image's predicted and ground-truth label maps (same shape)."""
        if prediction.shape != label.shape:
            raise ValueError(f"{source}: prediction {prediction.shape} and label {label.shape} "
                             "differ in shape.")
        n = len(self.class_names)
        keep = label != IGNORE_LABEL
        label, prediction = label[keep].astype(np.int64), prediction[keep].astype(np.int64)
        for name, values in (("label", label), ("prediction", prediction)):
            bad = values[(values < 0) | (values >= n)]
            if bad.size:
                raise ValueError(f"{source}: {name} values {np.unique(bad)[:5].tolist()} are "
                                 f"outside the {n} classes (and not {IGNORE_LABEL}).")
        self.confusion += np.bincount(label * n + prediction, minlength=n * n).reshape(n, n)

    def results(self) -> dict:
        """mIoU, aAcc (percent) and per-class IoU/accuracy (nan where undefined)."""
        intersection = np.diag(self.confusion).astype(np.float64)
        label_area = self.confusion.sum(1).astype(np.float64)
        union = label_area + self.confusion.sum(0) - intersection
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = intersection / union
            acc = intersection / label_area
        total = label_area.sum()
        return {
            "mIoU": _percent(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            "aAcc": _percent(intersection.sum() / total) if total else float("nan"),
            "num_pixels": int(total),
            "per_class": {name: {"IoU": _percent(i), "Acc": _percent(a)}
                          for name, i, a in zip(self.class_names, iou, acc)},
        }


def check_limit(limit: int | None) -> None:
    """An evaluation's `limit` (first N images) is None (all) or at least 1: 0 would
    report NaN metrics, and a negative one drop images from the end."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit!r}: evaluate at least 1 image (None: all).")


def _percent(x) -> float:
    return float(100.0 * x)


def format_table(results: dict) -> str:
    """The per-class table and the summary line, as text."""
    width = max(len("class"), *(len(n) for n in results["per_class"]))
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}"]
    lines += [f"{name:<{width}}  {v['IoU']:6.2f}  {v['Acc']:6.2f}"
              for name, v in results["per_class"].items()]
    lines.append(f"mIoU {results['mIoU']:.2f}  aAcc {results['aAcc']:.2f}  "
                 f"({results['num_pixels']} labelled pixels)")
    return "\n".join(lines)


def write_json(results: dict, path: str | os.PathLike) -> None:
    """JSON with nan written as null (valid JSON everywhere), through cli.write_json."""
    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        return None if isinstance(x, float) and np.isnan(x) else x
    cli.write_json(clean(results), path)
