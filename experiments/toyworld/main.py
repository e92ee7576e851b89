"""The main job: zero-shot segmentation emerging from captions alone, on one CPU.

    make run      # = python -m experiments.toyworld.main
    python -m experiments.toyworld.main --config=experiments/toyworld/config.py:long --workdir=out/toyworld_long

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
import os
import time
from pathlib import Path

import numpy as np
from absl import flags

from input_pipeline import cli, paths

PROGRESS = "[toyworld {:>5.0f}s] {}"


def _log(start: float, message: str) -> None:
    print(PROGRESS.format(time.time() - start, message), flush=True)


def scene_classification(model, dataset, templates) -> dict:
    """Image-level zero-shot accuracy: the top-1 class of the whole-image embedding is
    one of the objects in the scene (in percent); and the mIoU of painting that class
    over the whole scene, the bar that segmentation proper has to clear."""
    from groupvit_jax.evaluation.classification import text_classifier
    from groupvit_jax.models.pixels import normalize_pixels
    from groupvit_jax.models.model import l2_normalize
    classifier = text_classifier(model, dataset.query_names, templates)
    images, labels = zip(*(dataset.read(i) for i in range(len(dataset))))
    # Scenes share one size: one tower call for all of them.
    embeds = model.encode_image(normalize_pixels(np.stack(images)))["image_embeds"]
    best = np.argmax(np.asarray(l2_normalize(embeds)) @ classifier.T, axis=1)
    hits = [np.any(label == b + 1) for label, b in zip(labels, best)]
    painted = _segmentation_of(dataset, [np.full(label.shape, b + 1, np.int32)
                                         for label, b in zip(labels, best)], labels)
    return {"top1": 100.0 * float(np.mean(hits)), "num_images": len(hits),
            "top1_everywhere_mIoU": painted["mIoU"]}


def oracle_grouping(model, dataset, scale) -> dict | None:
    """The grouping's own quality, naming aside: mIoU when every final group takes the
    majority true label of its pixels, and the groups a scene uses (None for a ViT)."""
    from groupvit_jax.evaluation.demo import stage_group_maps
    predictions, labels, used = [], [], []
    for i in range(len(dataset)):
        image, label = dataset.read(i)
        maps = stage_group_maps(model, image, scale)
        if not maps:
            return None
        groups = maps[-1]
        oracle = np.zeros(label.shape, np.int32)
        for g in np.unique(groups):
            oracle[groups == g] = np.bincount(label[groups == g]).argmax()
        predictions.append(oracle)
        labels.append(label)
        used.append(len(np.unique(groups)))
    return {"mIoU": _segmentation_of(dataset, predictions, labels)["mIoU"],
            "groups_used": float(np.mean(used))}


def _segmentation_of(dataset, predictions, labels) -> dict:
    """The dataset's metric over label maps already predicted and read."""
    from groupvit_jax.evaluation.metrics import SegmentationMetric
    metric = SegmentationMetric(dataset.class_names)
    for prediction, label in zip(predictions, labels, strict=True):
        metric.add(prediction, label)
    return metric.results()


def all_background(dataset) -> dict:
    labels = [dataset.read(i)[1] for i in range(len(dataset))]
    return _segmentation_of(dataset, [np.zeros_like(label, np.int32) for label in labels],
                            labels)


def write_world(config, log=print) -> Path:
    """The training records and held-out scenes `config` names (kept if already there);
    returns the data folder (held-out scenes in its eval/)."""
    from experiments.toyworld.world import generate
    world = config.toyworld
    data_dir = Path(config.data.data_dir)
    size = config.model.vision.image_size
    # Reruns reuse the data; data of another world or size would silently mislead them.
    wanted = {"world": generate.WORLD_VERSION, "seed": world.seed, "size": size,
              "train_scenes": world.train_scenes, "eval_scenes": world.eval_scenes}
    stamp = data_dir / "world.json"
    if stamp.is_file() and json.loads(stamp.read_text()) != wanted:
        raise ValueError(f"{data_dir} holds another toy world ({stamp.read_text().strip()}); "
                         f"this config wants {wanted}: delete the folder or set "
                         "--config.data.data_dir to a new one.")
    if any(data_dir.glob("*")) and not stamp.is_file():
        raise ValueError(f"{data_dir} is not empty and has no world.json: not a toy world "
                         "this code wrote; set --config.data.data_dir to a new folder.")
    data_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(wanted) + "\n")
    log(f"toy world: {world.train_scenes} training scenes, {world.eval_scenes} held-out scenes "
        f"in {data_dir}")
    generate.write_train(data_dir / "train", world.train_scenes, world.seed, size)
    generate.write_eval(data_dir / "eval", world.eval_scenes, world.seed, size)
    return data_dir


def evaluate(model, dataset, seg_cfg, kmeans: int = 0, log=print) -> dict:
    """Zero-shot segmentation (the evaluation binary's code at `seg_cfg`'s scale),
    image-level classification and the oracle-named grouping of the held-out scenes."""
    from groupvit_jax.evaluation import segmentation
    from groupvit_jax.evaluation.resize import Scale
    predictor = segmentation.make_predictor(model, dataset, seg_cfg.bg_thresh, seg_cfg.template,
                                            Scale(**seg_cfg.scale), kmeans)
    return {"segmentation": segmentation.evaluate(predictor, dataset, log=log),
            "scene_classification": scene_classification(model, dataset, predictor.templates),
            "oracle_grouping": None if kmeans else oracle_grouping(model, dataset,
                                                                   predictor.scale)}


def run(config, workdir: str | os.PathLike) -> dict:
    """Every step of the main job; returns the results it also writes to results.json."""
    from groupvit_jax.checkpoints import pretrained
    from groupvit_jax.train import trainer
    from groupvit_jax.train.export import read_training_checkpoint
    from groupvit_jax.evaluation.demo import run as draw_demo
    from groupvit_jax.evaluation import datasets
    from groupvit_jax.evaluation.metrics import format_table
    from groupvit_jax.evaluation.resize import Scale

    start = time.time()
    workdir = paths.as_path(workdir)
    data_dir = write_world(config, log=lambda m: _log(start, "1/5 " + m))
    config.evals.seg.data_dir = str(data_dir / "eval")  # the scenes this run generated

    _log(start, f"2/5 training {config.total_steps} steps in {workdir / 'train'} "
                "(rerun to resume; TensorBoard logs there)")
    history = trainer.train_and_evaluate(config, workdir / "train")

    _log(start, f"3/5 export to {workdir / 'export'}")
    model = read_training_checkpoint(workdir / "train")
    pretrained.export(model, workdir / "export", overwrite=True)

    _log(start, "4/5 zero-shot evaluation on held-out scenes")
    dataset = datasets.folder(data_dir / "eval")
    seg_cfg = config.evals.seg
    scores = evaluate(model, dataset, seg_cfg, log=lambda m: _log(start, m))
    seg, cls, oracle = (scores[k] for k in ("segmentation", "scene_classification",
                                            "oracle_grouping"))
    baseline = all_background(dataset)
    # mIoU on the first `evals.seg.limit` held-out scenes during training (this run's steps).
    curve = [{k: row[k] for k in row if k in ("step", "seconds") or k.startswith("seg/")}
             for row in history if "seg/mIoU" in row]
    results = {"segmentation": seg, "scene_classification": cls, "oracle_grouping": oracle,
               "all_background": {k: baseline[k] for k in ("mIoU", "aAcc")},
               "train_steps": config.total_steps, "curve": curve,
               "seconds": time.time() - start}
    (workdir / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")

    _log(start, f"5/5 pictures in {workdir / 'demo'}")
    for i in range(config.toyworld.demo_scenes):
        image, _ = dataset.read(i)
        draw_demo(model, image, dataset.query_names, workdir / "demo" / f"scene{i}",
                  bg_thresh=seg_cfg.bg_thresh, template=seg_cfg.template,
                  scale=Scale(**seg_cfg.scale))

    print(format_table(seg))
    print(f"zero-shot mIoU {seg['mIoU']:.1f} (all-background baseline {baseline['mIoU']:.1f}, "
          f"the scene's top-1 class everywhere {cls['top1_everywhere_mIoU']:.1f}); "
          f"image-level zero-shot top-1 {cls['top1']:.1f}% on {cls['num_images']} held-out "
          f"scenes")
    if oracle:
        print(f"grouping alone (each final group labelled with its true majority class): "
              f"mIoU {oracle['mIoU']:.1f}, {oracle['groups_used']:.1f} groups per scene")
    print(f"results: {workdir / 'results.json'}; pictures: {workdir / 'demo'}; "
          f"model: {workdir / 'export'}")
    _log(start, "done")
    return results


def define_flags(fv: flags.FlagValues) -> None:
    cli.define_config_file(fv, "experiments/toyworld/config.py", "the toy world's config")
    flags.DEFINE_string("workdir", "out/toyworld", "training run, export, results, pictures "
                        "(a local folder or gs://)", flag_values=fv)


def _run(args: flags.FlagValues) -> int:
    from groupvit_jax.train.trainer import quiet_orbax_logs
    workdir = cli.path_flag(args, "workdir")
    config = cli.config_value(args)
    quiet_orbax_logs()
    run(config, workdir)
    return cli.OK


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
