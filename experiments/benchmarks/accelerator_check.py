"""The timing half of accelerator_check.sh: one JSON on a lent accelerator.

    python -m experiments.benchmarks.accelerator_check --out DIR/accelerator_check.json
    python -m experiments.benchmarks.accelerator_check --scale_down --out ...   # CPU test

On the accelerator: the full model's train step in bfloat16 at the `:gpu1` config's
256 examples per device (images/s per device, MFU against a measured bfloat16 matmul),
then the zero-shot segmentation evaluation of the full model (images/s, share outside
the tower). --scale_down runs the same code on the `:runlocal` model, 4 examples per
device and 2 evaluation images, so a CPU test checks the JSON in about a minute.
"""
from __future__ import annotations

import platform
from pathlib import Path

import jax
from absl import flags

from experiments.benchmarks import eval_speed, hygiene, train_speed
from groupvit_jax.models.config import GroupViTConfig
from input_pipeline import cli

# (variant, examples per device, matmul size of the ceiling, evaluation images)
FULL = (None, train_speed.GPU_BATCH_PER_DEVICE, train_speed.GPU_MATMUL_N, 20)
SCALED_DOWN = ("runlocal", 4, 256, 2)


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("out", None, "the JSON to write", required=True, flag_values=fv)
    flags.DEFINE_bool("scale_down", False, "the tiny model and batches (a CPU test)",
                      flag_values=fv)
    flags.DEFINE_integer("repeats", hygiene.MIN_RUNS, "timed runs per figure", lower_bound=1,
                         flag_values=fv)


def _run(args: flags.FlagValues) -> int:
    variant, per_device, matmul_n, images = SCALED_DOWN if args.scale_down else FULL
    devices = jax.devices()
    print(f"{len(devices)} x {devices[0].device_kind} ({jax.default_backend()})", flush=True)
    train = train_speed.bench_accelerator(args.repeats, variant, per_device, matmul_n)
    print(f"train step: {train['img_per_s_per_device']:.1f} images/s per device, "
          f"MFU {train['mfu']:.1%}", flush=True)
    eval_config = (GroupViTConfig.from_dict(train_speed.load_recipe(variant).model.to_dict())
                   if variant else None)
    evaluation = eval_speed.measure(images, eval_config)
    print(f"evaluation: {evaluation['images_per_s']:.2f} images/s, "
          f"{evaluation['outside_tower_share']:.1%} outside the tower", flush=True)
    cli.write_json({"scale_down": args.scale_down, "backend": jax.default_backend(),
                    "device_kind": devices[0].device_kind, "device_count": len(devices),
                    "platform": platform.platform(), "jax": jax.__version__,
                    "train": train, "eval": evaluation}, Path(args.out), default=str)
    return cli.OK


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
