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
    rrc_flip_draft       rrc_flip with jpeg_draft=True (windows >= 2x the output decoded at
                         1/2 scale in the DCT domain; not the recipe)
    rrc_flip_randaug     rrc_flip + RandAugment rand-m9-mstd0.5-inc1     (target >= 250/s)
    recipe               rrc_flip_randaug + RandomErasing 0.25 (train_image's defaults)

img/s is images per wall-clock second; img/cpu-s is images per second of this process's
CPU time, which moves less when other processes share the machine. Each figure is the
best of --repeats runs.

How far jpeg_draft moves the crops (`draft_deviation`): 224-pixel crops whose window is
at least 448 on both sides, of two photos (scikit-learn's sample images, short side
resized 427 -> 512 and saved at quality 95 as the converter does; the upscale smooths
them a little) and of the generated JPEGs, compared as uint8 images (mean and max
absolute difference in grey levels, share of values more than 4 levels apart, PSNR):

    tf_vs_pil            the recipe's path against PIL (crop, Image.resize BILINEAR):
                         what decoding with TensorFlow instead of PIL already moves
    draft_vs_pil         jpeg_draft=True against PIL
    draft_vs_tf          jpeg_draft=True against the recipe's path
    pil_draft_vs_pil     PIL's own draft mode (Image.draft, then resize of the exact box)
                         against PIL: the cost of DCT-domain scaling itself

The table prints and the JSON (default
experiments/benchmarks/results/augment_speed.json; --quick: the temp folder) keeps every
run and the load average.
Run it on an idle machine for the figures that count.
"""
from __future__ import annotations

import datetime
import io
import math
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
    "rrc_flip_draft": lambda b, s: augment.train_image(
        b, s, randaugment=None, random_erasing=0.0, jpeg_draft=True),
    "rrc_flip_randaug": lambda b, s: augment.train_image(b, s, random_erasing=0.0),
    "recipe": augment.train_image,
}


def _photos() -> list[bytes]:
    """scikit-learn's two sample photos at the converted datasets' size and quality."""
    from sklearn.datasets import load_sample_images  # test extra; only this part needs it
    photos = []
    for array in load_sample_images().images:
        image = Image.fromarray(array)
        factor = 512 / min(image.size)
        image = image.resize([round(side * factor) for side in image.size], Image.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95)
        photos.append(buffer.getvalue())
    return photos


def _pil_crop(image_bytes: bytes, window, size: int, draft: bool = False) -> np.ndarray:
    """torchvision's RandomResizedCrop step on PIL: crop, resize BILINEAR. draft: PIL's
    draft mode at 1/2 scale, then the exact window's box resized."""
    y, x, h, w = window
    image = Image.open(io.BytesIO(image_bytes))
    if not draft:
        return np.asarray(image.convert("RGB").crop((x, y, x + w, y + h))
                          .resize((size, size), Image.BILINEAR))
    image.draft("RGB", (image.size[0] // 2, image.size[1] // 2))
    box = (x / 2, y / 2, (x + w) / 2, (y + h) / 2)
    return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR, box=box))


def _difference(a: np.ndarray, b: np.ndarray) -> dict:
    diff = np.abs(a.astype(np.float64) - b)
    mse = max(float(np.mean(diff ** 2)), 1e-12)
    return {"mean": float(diff.mean()), "max": float(diff.max()),
            "over_4": float(np.mean(diff > 4)), "psnr_db": 10 * math.log10(255 ** 2 / mse)}


def draft_deviation(images: list[bytes], crops_per_image: int = 15, size: int = 224) -> dict:
    """The comparisons of the docstring, over crops whose window takes the 1/2 draft."""
    pairs = {"tf_vs_pil": [], "draft_vs_pil": [], "draft_vs_tf": [], "pil_draft_vs_pil": []}
    for i, image_bytes in enumerate(images):
        height, width = (int(v) for v in tf.image.extract_jpeg_shape(image_bytes)[:2])
        taken = 0
        for j in range(1000):
            if taken == crops_per_image:
                break
            seed = tf.constant([i, j], tf.int64)
            window = [int(v) for v in augment.sample_crop_window(height, width, seed)]
            if min(window[2:]) < 2 * size:
                continue
            taken += 1
            ours = augment.resized_random_crop(image_bytes, seed, (size, size)).numpy()
            drafted = augment.resized_random_crop(image_bytes, seed, (size, size),
                                                  jpeg_draft=True).numpy()
            pil = _pil_crop(image_bytes, window, size)
            pairs["tf_vs_pil"].append(_difference(ours, pil))
            pairs["draft_vs_pil"].append(_difference(drafted, pil))
            pairs["draft_vs_tf"].append(_difference(drafted, ours))
            pairs["pil_draft_vs_pil"].append(_difference(_pil_crop(image_bytes, window, size,
                                                                   draft=True), pil))
    summary = {}
    for name, rows in pairs.items():
        psnr = [r["psnr_db"] for r in rows]
        summary[name] = {"crops": len(rows),
                         "mean": float(np.mean([r["mean"] for r in rows])),
                         "max": max(r["max"] for r in rows),
                         "over_4": float(np.mean([r["over_4"] for r in rows])),
                         "psnr_db_median": float(np.median(psnr)),
                         "psnr_db_min": min(psnr)}
    return summary


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
    deviation = {"photos": draft_deviation(_photos()),
                 "generated": draft_deviation(synthetic_jpegs(6))}
    print(f"\n{'jpeg_draft deviation':26s} {'mean':>6s} {'max':>5s} {'>4':>7s} "
          f"{'PSNR dB (min)':>14s}")
    for kind, summary in deviation.items():
        for name, row in summary.items():
            print(f"{kind + ' ' + name:26s} {row['mean']:6.2f} {row['max']:5.0f} "
                  f"{row['over_4']:7.2%} {row['psnr_db_median']:7.1f} ({row['psnr_db_min']:.1f})")
    report = {
        "benchmark": "augment_speed", "rows": rows, "draft_deviation": deviation,
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
