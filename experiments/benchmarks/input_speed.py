"""Input-pipeline throughput: decode + augment + prompts + tokenise, per host and per core.

    python -m experiments.benchmarks.input_speed --config configs/gcc_yfcc_2stage.py [--data DIR]
        [--steps N] [--batch B] [--tiny]

Without --data, a small dataset of 512-pixel (short side) JPEGs with captions is written
to a temporary folder through input_pipeline.convert. Each row times `--steps` batches
after one warm-up batch, with tf.data limited to 1 thread (per core) and to all cores
(per host), RandAugment off and on. Then: the cores a host needs to feed its accelerators,
from the FLOPs per image of the full model's train step in
experiments/benchmarks/results/train_speed.json and an accelerator throughput (see
--host_tflops, --mfu). Writes experiments/benchmarks/results/input_speed.json.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import flags

from experiments.benchmarks import hygiene
from groupvit_jax.train.config_files import load_config
from input_pipeline import cli, records

RESULTS = Path("experiments/benchmarks/results")
WORDS = ("dog", "cat", "man", "woman", "car", "tree", "house", "beach", "city", "street",
         "red", "small", "running", "sitting", "on", "the", "with", "near", "old", "bridge")
# Per host: TPU v4 (4 chips x 275 bf16 TFLOP/s) and 8 x H100 SXM (989 dense bf16 TFLOP/s).
HOSTS = {"tpu_v4_host": 4 * 275.0, "8x_h100_host": 8 * 989.0}


def write_images(folder: Path, count: int, seed: int = 0) -> None:
    """Photo-like JPEGs (smooth shapes + noise), short side 512, with .txt captions."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:512, 0:683].astype(np.float32)
    for i in range(count):
        a, b, c = rng.uniform(0.005, 0.03, 3)
        base = np.stack([np.sin(a * xx + i), np.cos(b * yy), np.sin(c * (xx + yy))], -1)
        pixels = 127 + 100 * base + rng.normal(0, 12, base.shape)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        image.save(folder / f"{i:06d}.jpg", quality=90)
        words = rng.choice(WORDS, rng.integers(5, 15))
        (folder / f"{i:06d}.txt").write_text("a photo of " + " ".join(words))


def images_per_second(config, steps: int) -> float:
    from input_pipeline.train_dataset import create_train_dataset

    batches = create_train_dataset(config, process_index=0, process_count=1).as_numpy_iterator()
    next(batches)  # warm-up: tracing, file opening, the first shuffle block
    start = time.perf_counter()
    for _ in range(steps):
        next(batches)
    return steps * config.data.global_batch / (time.perf_counter() - start)


def flops_per_image() -> float | None:
    path = RESULTS / "train_speed.json"
    if not path.is_file():
        return None
    rows = json.loads(path.read_text())["rows"]
    full = [r for r in rows if r.get("variant") == ""]
    return full[0]["gflop_per_step"] * 1e9 / full[0]["batch"] if full else None


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("config", "configs/gcc_yfcc_2stage.py", "the training config file",
                        flag_values=fv)
    flags.DEFINE_string("data", None, "a converted dataset folder (default: generate one)",
                        flag_values=fv)
    flags.DEFINE_integer("steps", 20, "timed steps per row", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("batch", 64, "batch per timed step", lower_bound=1, flag_values=fv)
    flags.DEFINE_float("mfu", 0.4, "accelerator utilisation", lower_bound=0, upper_bound=1,
                       flag_values=fv)
    flags.DEFINE_bool("tiny", False, "a few small batches: checks it runs", flag_values=fv)
    flags.DEFINE_string("out", str(RESULTS / "input_speed.json"), "JSON results path",
                        flag_values=fv)
    flags.DEFINE_integer("repeats", hygiene.MIN_RUNS, "timed runs per row (median)",
                         lower_bound=1, flag_values=fv)
    hygiene.define_flags(fv)


def _run(args: flags.FlagValues) -> int:
    load_config(args.config)  # bad inputs fail here, before TensorFlow loads
    if args.data is not None:
        records.read_manifest(args.data)
    import tensorflow as tf
    tf.config.set_visible_devices([], "GPU")

    steps, batch, count = (2, 8, 48) if args.tiny else (args.steps, args.batch, 1024)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from input_pipeline.convert import convert_dataset
            write_images(Path(tmp) / "images", count)
            convert_dataset([str(Path(tmp) / "images")], "folder", Path(tmp) / "data",
                            examples_per_shard=max(count // 8, 1), progress=False)
            data = str(Path(tmp) / "data")
        config = load_config(args.config)
        config.data.source, config.data.data_dir = "records", ""
        config.data.datasets = {data: 1.0}
        config.data.global_batch = batch
        config.data.shuffle_buffer = min(config.data.shuffle_buffer, count // 2)
        cores = os.cpu_count()
        load = hygiene.OutsideLoad()
        rows = []
        for randaugment in (None, config.data.augment.randaugment):
            for threads in (1, cores):
                config.data.augment.randaugment = randaugment
                config.data.num_threads = threads
                runs = hygiene.spread(images_per_second(config, steps)
                                      for _ in range(1 if args.tiny else args.repeats))
                rate = runs["median"]
                rows.append({"randaugment": randaugment or "off", "threads": threads,
                             "images_per_s": rate, "images_per_s_per_core": rate / threads,
                             "images_per_s_spread": runs})
                print(f"randaugment={randaugment or 'off':24s} threads={threads:3d} "
                      f"{rate:8.1f} img/s  {rate / threads:8.1f} img/s/core")
    needs = {}
    flops = flops_per_image()
    per_core = {r["randaugment"]: r["images_per_s_per_core"] for r in rows if r["threads"] == 1}
    if flops:
        for host, tflops in HOSTS.items():
            fed = tflops * 1e12 * args.mfu / flops  # images/s the host's accelerators train
            needs[host] = {"images_per_s": fed,
                           "seconds_per_4096_step_per_host": 4096 / fed,
                           **{f"cores_randaugment_{k}": fed / v for k, v in per_core.items()}}
            print(f"{host}: trains {fed:.0f} img/s at MFU {args.mfu} "
                  f"({flops / 1e9:.1f} GFLOP/image); cores needed: "
                  + ", ".join(f"RandAugment {k}: {fed / v:.1f}" for k, v in per_core.items()))
    result = {"machine": {"cpu_count": cores, "platform": platform.platform(),
                          "tensorflow": tf.__version__},
              "tiny": args.tiny, "batch": batch, "steps": steps, "data": args.data or "generated",
              "rows": rows, "flops_per_image": flops, "mfu": args.mfu, "hosts": needs}
    return hygiene.finish(result, load, args.out, args.allow_contended,
                          1 if args.tiny else args.repeats)


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
