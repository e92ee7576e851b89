"""A whole zero-shot segmentation evaluation: dataset in, mIoU table out.

Each host evaluates every `process_count`-th image (padded so all hosts run the same
number of steps); the confusion matrices are summed over hosts at the end. The first host
alone logs and draws the pictures (every host's predictions are sent to it each step). Used by the
`eval_seg` binary and, as kind "seg", by the trainer's periodic evaluators.
"""
from __future__ import annotations

import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

from groupvit_jax.evaluation import datasets
from groupvit_jax.evaluation.metrics import SegmentationMetric, check_limit
from groupvit_jax.evaluation.predict import DEFAULT_TEMPLATE, SegmentationPredictor
from groupvit_jax.evaluation.resize import RELEASED, Scale
from groupvit_jax.evaluation.pictures import render_segmentation, save_png
from input_pipeline import paths
from input_pipeline.eval_readers import batches, host_share

PROGRESS_EVERY_S = 10.0


def progress_line(done: int, total: int, seconds: float) -> str:
    """'[done/total] images/s, ETA' for the evaluation binaries' progress."""
    rate = done / seconds if seconds > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else float("inf")
    return f"[{done}/{total}] {rate:.2f} images/s, ETA {eta:.0f} s"


def _write_vis(vis_dir: epath.Path, dataset, index: int, image, labels) -> None:
    picture = render_segmentation(image, labels, dataset.query_names, dataset.with_background)
    save_png(vis_dir / f"{dataset.pairs[index][0].stem}.png", picture)


def _every_hosts_predictions(examples, predictions, step_size: int) -> list[tuple]:
    """(image index, label map) of every host's images of this step (a collective)."""
    shapes = np.full((step_size, 3), -1, np.int32)  # (index, height, width); -1: none
    for row, ((i, _, _), prediction) in enumerate(zip(examples, predictions)):
        shapes[row] = (i, *prediction.shape)
    shapes = np.asarray(multihost_utils.process_allgather(shapes)).reshape(-1, 3)
    height, width = max(1, shapes[:, 1].max()), max(1, shapes[:, 2].max())
    maps = np.zeros((step_size, height, width), np.int32)
    for row, prediction in enumerate(predictions):
        maps[row, :prediction.shape[0], :prediction.shape[1]] = prediction
    maps = np.asarray(multihost_utils.process_allgather(maps)).reshape(-1, height, width)
    return [(i, maps[row, :h, :w]) for row, (i, h, w) in enumerate(shapes) if i >= 0]


def make_predictor(model, dataset: datasets.SegmentationDataset,
                   bg_thresh: float | None = None,
                   template: str | Sequence[str] = DEFAULT_TEMPLATE,
                   scale: Scale = RELEASED, kmeans: int = 0) -> SegmentationPredictor:
    """The dataset's classes and background rule; bg_thresh defaults to the dataset's.
    kmeans > 0: that many k-means segments per window instead of the model's own."""
    if bg_thresh is None:
        bg_thresh = datasets.DEFAULT_BG_THRESH[dataset.name]
    return SegmentationPredictor(model, dataset.query_names, bg_thresh=bg_thresh,
                                 with_background=dataset.with_background, template=template,
                                 scale=scale, kmeans=kmeans)


def evaluate(predictor: SegmentationPredictor, dataset: datasets.SegmentationDataset, *,
             limit: int | None = None, vis_dir: str | os.PathLike | None = None,
             log: Callable[[str], None] | None = print) -> dict:
    """mIoU, aAcc, per-class IoU/Acc (percent) and run facts for `dataset`'s first `limit`
    images (all by default)."""
    check_limit(limit)
    total = len(dataset) if limit is None else min(limit, len(dataset))
    mine = host_share(list(range(total)), jax.process_index(), jax.process_count())
    first = jax.process_index() == 0  # writes the pictures and logs
    vis_dir = None if vis_dir is None else paths.as_path(vis_dir)
    if vis_dir is not None and first:
        vis_dir.mkdir(parents=True, exist_ok=True)
    log = log if first else None
    metric = SegmentationMetric(dataset.class_names)
    start = last_log = time.time()
    done = 0

    def read(step):
        indices, valid = step
        return [(i, *dataset.read(i)) for i, ok in zip(indices, valid) if ok]

    with ThreadPoolExecutor(1) as reader:  # decode the next step while this one computes
        # Enough images per step to fill the largest tower batch (1 to 3 windows each).
        step_size = max(1, predictor.window_batch // 2)
        steps = batches(mine, step_size)
        pending = reader.submit(read, next(steps)) if mine else None
        while pending is not None:
            examples = pending.result()
            following = next(steps, None)
            pending = reader.submit(read, following) if following is not None else None
            predictions = predictor.predict([image for _, image, _ in examples])
            for (i, image, label), prediction in zip(examples, predictions):
                metric.add(prediction, label, str(dataset.pairs[i][1]))
            if vis_dir is not None:
                pictures = [(i, p) for (i, _, _), p in zip(examples, predictions)]
                if jax.process_count() > 1:
                    pictures = _every_hosts_predictions(examples, predictions, step_size)
                if first:
                    own = {i: image for i, image, _ in examples}
                    for i, prediction in pictures:
                        image = own[i] if i in own else dataset.read(i)[0]
                        _write_vis(vis_dir, dataset, i, image, prediction)
            done += len(examples) * jax.process_count()
            if log and (time.time() - last_log > PROGRESS_EVERY_S or pending is None):
                log(progress_line(min(done, total), total, time.time() - start))
                last_log = time.time()
    if jax.process_count() > 1:
        metric.confusion = np.asarray(
            multihost_utils.process_allgather(metric.confusion)).sum(0)
    seconds = time.time() - start
    return {**metric.results(), "dataset": dataset.name, "num_images": total,
            "bg_thresh": float(predictor.bg_thresh), "templates": list(predictor.templates),
            "scale": dataclasses.asdict(predictor.scale), "kmeans": predictor.kmeans,
            "seconds": seconds, "images_per_sec": total / seconds if seconds else 0.0}


def evaluator(cfg, train_config):
    """Periodic evaluator "seg". cfg: dataset (voc|context|coco_object|folder), data_dir,
    and optionally limit, bg_thresh (default: the dataset's), template (a template or a
    set name), scale (a dict of evaluation.resize.Scale's fields; default the released
    protocol's) and kmeans (k-means segments per window instead of the model's; default
    0: the model's)."""
    del train_config
    dataset = datasets.load(cfg.dataset, cfg.data_dir)
    scale = Scale(**cfg.scale) if cfg.get("scale") else RELEASED

    def run(model):
        # A predictor per evaluation holds these variables; the compiled pass is shared.
        predictor = make_predictor(model, dataset, cfg.get("bg_thresh"),
                                   cfg.get("template", DEFAULT_TEMPLATE), scale,
                                   cfg.get("kmeans", 0))
        result = evaluate(predictor, dataset, limit=cfg.get("limit"), log=None)
        return {"mIoU": result["mIoU"], "aAcc": result["aAcc"]}
    return run
