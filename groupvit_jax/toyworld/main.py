"""The main job: zero-shot segmentation emerging from captions alone, on one CPU.

    make run      # = python -m groupvit_jax.toyworld.main
    python -m groupvit_jax.toyworld.main --config=configs/toyworld.py:long --workdir=out/toyworld_long

1. writes the toy world: training records through the real converter (nouns extracted
   there) and held-out segmentation scenes from another seed;
2. trains GroupViT with the train binary's `train_and_evaluate` (tf.data pipeline, K
   prompts from nouns, both losses, Orbax checkpoints, clu logs); a rerun resumes;
3. exports the last checkpoint in the format `gv.load_pretrained` reads;
4. evaluates zero-shot segmentation on the held-out scenes (the evaluation binary's code,
   at the toy world's scale) and image-level zero-shot classification, beside the
   all-background baseline;
5. draws demo pictures of held-out scenes; prints the tables and where everything is.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

PROGRESS = "[toyworld {:>5.0f}s] {}"


def _log(start: float, message: str) -> None:
    print(PROGRESS.format(time.time() - start, message), flush=True)


def scene_classification(model, dataset, templates) -> dict:
    """Image-level zero-shot accuracy: the top-1 class of the whole-image embedding is
    one of the objects in the scene (in percent)."""
    from groupvit_jax.evaluation.classification import text_classifier
    from groupvit_jax.evaluation.resize import normalize_pixels
    from groupvit_jax.losses import l2_normalize
    classifier = text_classifier(model, dataset.query_names, templates)
    images, labels = zip(*(dataset.read(i) for i in range(len(dataset))))
    # Scenes share one size: one tower call for all of them.
    embeds = model.encode_image(normalize_pixels(np.stack(images)))["image_embeds"]
    best = np.argmax(np.asarray(l2_normalize(embeds)) @ classifier.T, axis=1)
    hits = [np.any(label == b + 1) for label, b in zip(labels, best)]
    return {"top1": 100.0 * float(np.mean(hits)), "num_images": len(hits)}


def all_background(dataset) -> dict:
    from groupvit_jax.evaluation.metrics import SegmentationMetric
    metric = SegmentationMetric(dataset.class_names)
    for i in range(len(dataset)):
        _, label = dataset.read(i)
        metric.add(np.zeros_like(label, np.int32), label)
    return metric.results()


def run(config, workdir: str | Path) -> dict:
    """Every step of the main job; returns the results it also writes to results.json."""
    from groupvit_jax import pretrained, train
    from groupvit_jax.export import read_training_checkpoint
    from groupvit_jax.demo import run as draw_demo
    from groupvit_jax.evaluation import datasets, segmentation
    from groupvit_jax.evaluation.metrics import format_table
    from groupvit_jax.evaluation.resize import Scale
    from groupvit_jax.toyworld import generate

    start = time.time()
    workdir = Path(workdir)
    world = config.toyworld
    data_dir = Path(config.data.data_dir)
    config.evals.seg.data_dir = str(data_dir / "eval")  # the scenes this run generates
    size = config.model.vision.image_size
    _log(start, f"1/5 toy world: {world.train_scenes} training scenes, {world.eval_scenes} "
                f"held-out scenes in {data_dir}")
    generate.write_train(data_dir / "train", world.train_scenes, world.seed, size)
    generate.write_eval(data_dir / "eval", world.eval_scenes, world.seed, size)

    _log(start, f"2/5 training {config.total_steps} steps in {workdir / 'train'} "
                "(rerun to resume; TensorBoard logs there)")
    history = train.train_and_evaluate(config, workdir / "train")

    _log(start, f"3/5 export to {workdir / 'export'}")
    model = read_training_checkpoint(workdir / "train")
    pretrained.export(model, workdir / "export", overwrite=True)

    _log(start, "4/5 zero-shot evaluation on held-out scenes")
    dataset = datasets.folder(data_dir / "eval")
    seg_cfg = config.evals.seg
    scale = Scale(**seg_cfg.scale)
    predictor = segmentation.make_predictor(model, dataset, seg_cfg.bg_thresh, seg_cfg.template,
                                            scale)
    seg = segmentation.evaluate(predictor, dataset, log=lambda m: _log(start, m))
    cls = scene_classification(model, dataset, predictor.templates)
    baseline = all_background(dataset)
    # mIoU on the first `evals.seg.limit` held-out scenes during training (this run's steps).
    curve = [{k: row[k] for k in row if k == "step" or k.startswith("seg/")}
             for row in history if "seg/mIoU" in row]
    results = {"segmentation": seg, "scene_classification": cls,
               "all_background": {k: baseline[k] for k in ("mIoU", "aAcc")},
               "train_steps": config.total_steps, "curve": curve,
               "seconds": time.time() - start}
    (workdir / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")

    _log(start, f"5/5 pictures in {workdir / 'demo'}")
    for i in range(world.demo_scenes):
        image, _ = dataset.read(i)
        draw_demo(model, image, dataset.query_names, workdir / "demo" / f"scene{i}",
                  bg_thresh=seg_cfg.bg_thresh, template=seg_cfg.template, scale=scale)

    print(format_table(seg))
    print(f"zero-shot mIoU {seg['mIoU']:.1f} (all-background baseline {baseline['mIoU']:.1f}); "
          f"image-level zero-shot top-1 {cls['top1']:.1f}% on {cls['num_images']} held-out "
          f"scenes")
    print(f"results: {workdir / 'results.json'}; pictures: {workdir / 'demo'}; "
          f"model: {workdir / 'export'}")
    _log(start, "done")
    return results


def main(argv) -> None:
    from absl import flags

    from groupvit_jax.train import quiet_orbax_logs
    del argv
    quiet_orbax_logs()
    run(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", "configs/toyworld.py", "the toy world's config",
                                    lock_config=True)
    flags.DEFINE_string("workdir", "out/toyworld", "training run, export, results, pictures")
    app.run(main)
    sys.exit(0)
