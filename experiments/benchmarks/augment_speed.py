"""Speed of the training image preprocessing on ONE core.

    .venv/bin/python -m experiments.benchmarks.augment_speed [--images 64] [--repeats 3] [--quick]

Inputs: generated JPEGs with a 512-pixel short side (the converted datasets' size), long
side 512-768, quality 90, natural-ish content (smooth noise plus filled shapes). Each row
runs a tf.data pipeline with one thread (map parallelism 1, private thread pool 1,
intra-op parallelism 1) and batches of 64 so Python iteration does not count:

    decode_and_crop      reference: tf.image.decode_and_crop_jpeg of the RRC window only
    plain_crop_resize    reference: the usual tf.data recipe, decode_and_crop + a bilinear
                         resize without antialiasing (float32 out)
    rrc_flip             decode window + resize to 224 + flip + normalise (target >= 600/s)
    rrc_flip_aliased     rrc_flip with antialias=False (plain bilinear; not the recipe)
    rrc_flip_randaug     rrc_flip + RandAugment rand-m9-mstd0.5-inc1     (target >= 250/s)
    recipe               rrc_flip_randaug + RandomErasing 0.25 (train_image's defaults)

img/s is images per wall-clock second; img/cpu-s is images per second of this process's
CPU time, which moves less when other processes share the machine. Each figure is the
best of --repeats runs. The table prints and the JSON (default
experiments/benchmarks/results/augment_speed.json; --quick: the temp folder) keeps every
run and the load average.
Run it on an idle machine for the figures that count.
"""
from __future__ import annotations

import datetime
import io
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from absl import flags

from experiments.benchmarks import hygiene
from PIL import Image, ImageDraw

from input_pipeline import augment, cli

TARGETS = {"rrc_flip": 600, "rrc_flip_randaug": 250}
DEFAULT_OUT = Path("experiments/benchmarks/results/augment_speed.json")
BATCH = 64


def synthetic_jpegs(count: int, seed: int = 0) -> list[bytes]:
    """512-pixel short side, smooth colour noise under a few filled ellipses, quality 90."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        long_side = int(rng.integers(512, 769))
        width, height = (long_side, 512) if rng.random() < 0.5 else (512, long_side)
        coarse = rng.integers(0, 256, (height // 32, width // 32, 3), np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(8):
            x, y, r = rng.integers(0, width), rng.integers(0, height), rng.integers(16, 160)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.integers(0, 256, 3).tolist()))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def _decode_and_crop(image_bytes, seed):
    shape = tf.image.extract_jpeg_shape(image_bytes)
    window = augment.sample_crop_window(shape[0], shape[1], seed)
    return tf.image.decode_and_crop_jpeg(image_bytes, tf.stack(window), channels=3)


PIPELINES = {
    "decode_and_crop": lambda b, s: _decode_and_crop(b, s)[:1, :1],
    "plain_crop_resize": lambda b, s: tf.image.resize(_decode_and_crop(b, s), [224, 224]),
    "rrc_flip": lambda b, s: augment.train_image(b, s, randaugment=None, random_erasing=0.0),
    "rrc_flip_aliased": lambda b, s: augment.train_image(
        b, s, randaugment=None, random_erasing=0.0, antialias=False),
    "rrc_flip_randaug": lambda b, s: augment.train_image(b, s, random_erasing=0.0),
    "recipe": augment.train_image,
}


def _one_core_dataset(images: list[bytes], fn) -> tf.data.Dataset:
    dataset = tf.data.Dataset.from_tensor_slices(images).repeat().enumerate()
    dataset = dataset.map(lambda i, b: fn(b, tf.stack([i, tf.constant(0, tf.int64)])),
                          num_parallel_calls=1)
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    return dataset.batch(BATCH).with_options(options)


def measure(images: list[bytes], fn, batches: int) -> dict:
    iterator = iter(_one_core_dataset(images, fn))
    next(iterator)  # trace and warm up
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(batches):
        next(iterator)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    count = batches * BATCH
    return {"images": count, "wall_s": wall, "cpu_s": cpu,
            "img_per_s": count / wall, "img_per_cpu_s": count / cpu}


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("images", 64, "distinct JPEGs to cycle over", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("batches", 8, "timed batches of 64 per run", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("repeats", 3, "runs per pipeline (the best counts)", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_bool("quick", False, "smoke run: 1 batch, 1 repeat, JSON to the temp folder",
                      flag_values=fv)
    flags.DEFINE_string("out", None, f"JSON results path; default {DEFAULT_OUT}",
                        flag_values=fv)
    hygiene.define_flags(fv)


def _run(args: flags.FlagValues) -> int:
    if args.quick:
        args.images, args.batches, args.repeats = 8, 1, 1
    # A smoke run never overwrites the recorded figures.
    out = Path(args.out) if args.out else (Path(tempfile.gettempdir()) / DEFAULT_OUT.name
                                           if args.quick else DEFAULT_OUT)

    tf.config.set_visible_devices([], "GPU")
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    images = synthetic_jpegs(args.images)
    load = hygiene.OutsideLoad()
    runs = {name: [] for name in PIPELINES}
    for _ in range(args.repeats):  # interleaved, so a burst of load hits every row alike
        for name, fn in PIPELINES.items():
            runs[name].append(measure(images, fn, args.batches))

    print(f"{'pipeline':18s} {'img/s':>8s} {'img/cpu-s':>10s} {'target':>7s}")
    rows = {}
    for name, results in runs.items():
        best = max(r["img_per_s"] for r in results)
        best_cpu = max(r["img_per_cpu_s"] for r in results)
        target = TARGETS.get(name)
        rows[name] = {"img_per_s": best, "img_per_cpu_s": best_cpu, "target": target,
                      "img_per_s_spread": hygiene.spread(r["img_per_s"] for r in results),
                      "runs": results}
        print(f"{name:18s} {best:8.0f} {best_cpu:10.0f} {target or '':>7}")
    report = {
        "benchmark": "augment_speed", "rows": rows,
        "setup": {"images": args.images, "batch": BATCH, "batches": args.batches,
                  "repeats": args.repeats, "image": "JPEG q90, short side 512, long 512-768",
                  "threads": 1},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "processor": platform.processor(), "tensorflow": tf.__version__},
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    return hygiene.finish(report, load, out, args.allow_contended, args.repeats)


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
