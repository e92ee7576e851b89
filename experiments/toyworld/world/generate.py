"""Writes the toy world to disk in the project's two dataset layouts.

    python -m experiments.toyworld.world.generate --out=data/toyworld --train=20000 --eval=200

gives
    OUT/train/     training records (input_pipeline's TFRecord shards + manifest), made by
                   writing scenes as PNG + same-name .txt captions and running the real
                   converter on them (nouns are extracted there, as for web data);
    OUT/eval/      a folder-layout segmentation set (images/, labels/, classes.txt with
                   "background" first) for `python -m groupvit_jax.evaluation.eval_seg --dataset folder`.
Training scenes come from world `seed`, evaluation scenes from world `seed + EVAL_OFFSET`:
they are never the same scenes. Existing outputs are kept (rerunning resumes).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
from absl import flags
from PIL import Image

from experiments.toyworld.world.captions import caption
from experiments.toyworld.world.scenes import CLASSES, make_scene
from input_pipeline import cli

EVAL_OFFSET = 1_000_003
# Bumped whenever scenes or captions change: data written by another version is refused.
WORLD_VERSION = 2
CHUNK = 500


def _write_caption_chunk(folder: str, seed: int, start: int, stop: int, size: int) -> None:
    for i in range(start, stop):
        scene = make_scene(seed, i, size)
        Image.fromarray(scene.image).save(Path(folder) / f"{i:08d}.png", compress_level=1)
        text = caption(scene, np.random.default_rng([seed, i, 1]))
        (Path(folder) / f"{i:08d}.txt").write_text(text + "\n")


def _write_segmentation_chunk(folder: str, seed: int, start: int, stop: int, size: int) -> None:
    for i in range(start, stop):
        scene = make_scene(seed, i, size)
        Image.fromarray(scene.image).save(Path(folder) / "images" / f"{i:06d}.png")
        Image.fromarray(scene.labels).save(Path(folder) / "labels" / f"{i:06d}.png")


def _parallel(fn, folder: Path, seed: int, count: int, size: int, workers: int) -> None:
    chunks = [(s, min(s + CHUNK, count)) for s in range(0, count, CHUNK)]
    # Spawned, not forked: the caller may already run JAX's threads.
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        list(pool.map(fn, *zip(*[(str(folder), seed, a, b, size) for a, b in chunks])))


def write_train(out: Path, count: int, seed: int = 0, size: int = 64, workers: int = 2) -> dict:
    """Training records at `out` (kept if already complete); returns the manifest."""
    from input_pipeline import add_tfds_metadata, cli, convert, records
    if (out / records.MANIFEST).is_file():
        if cli.read_json(out / records.MANIFEST).get("format") == records.OLD_FORMAT:
            return add_tfds_metadata.add_metadata(out)  # written before records were TFDS's
        return records.read_manifest(out)
    staging = out.with_name(out.name + ".captions")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _parallel(_write_caption_chunk, staging, seed, count, size, workers)
    manifest = convert.convert_dataset([str(staging)], "folder", out, name="toyworld",
                                       examples_per_shard=max(count // (4 * workers), 1),
                                       workers=workers, progress=False)
    shutil.rmtree(staging)
    return manifest


def write_eval(out: Path, count: int, seed: int = 0, size: int = 64, workers: int = 2) -> Path:
    """The held-out segmentation set at `out` (kept if already complete)."""
    classes_file = out / "classes.txt"
    if classes_file.is_file():
        return out
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "images").mkdir(parents=True)
    (staging / "labels").mkdir()
    _parallel(_write_segmentation_chunk, staging, seed + EVAL_OFFSET, count, size, workers)
    (staging / "classes.txt").write_text("\n".join(("background",) + CLASSES) + "\n")
    staging.rename(out)
    return out


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("out", None, "folder for train/ and eval/", flag_values=fv,
                        required=True)
    flags.DEFINE_integer("train", 20_000, "training scenes", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("eval", 200, "held-out segmentation scenes", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("size", 64, "image side in pixels", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("seed", 0, "the training world's seed", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("workers", 2, "processes", lower_bound=1, flag_values=fv)


def _run(args: flags.FlagValues) -> int:
    out = Path(args.out)
    manifest = write_train(out / "train", args.train, args.seed, args.size, args.workers)
    write_eval(out / "eval", args.eval, args.seed, args.size, args.workers)
    print(f"{manifest['num_examples']} training pairs in {out / 'train'}, "
          f"{args.eval} held-out scenes in {out / 'eval'}")
    return cli.OK


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
