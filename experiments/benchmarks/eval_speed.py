"""Speed of the zero-shot segmentation evaluation, and the share spent outside the tower.

Run from the repository root (on an idle machine; --images 2 is a smoke run):

    .venv/bin/python -m experiments.benchmarks.eval_speed [--images 50] [--out FILE.json]

A folder dataset of generated 500x375 JPEGs (VOC-sized: two 448 windows each after the
resize to 448x597) with label PNGs is evaluated end to end with the full default
GroupViTConfig (random weights, 21 classes with background, VOC's threshold): decode,
resize, windows, one tower pass per window, scores, averaging, resize back, argmax,
confusion matrix. Two runs: the default devices, and 8 fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=8, in a subprocess) with the windows
sharded over them. "tower" is the same number of jitted encode_image calls on
same-shaped window batches alone; the rest of the time is the evaluation's own work
(target: under 15%). Compilation is excluded (one warm-up image first); times are the
best of three runs.

For scale: the released code evaluates VOC val at 9.9 images/s on one RTX 3090.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import flags

from experiments.benchmarks import hygiene
from input_pipeline import cli

DEFAULT_OUT = Path(__file__).parent / "results" / "eval_speed.json"
IMAGE_HW = (375, 500)
TARGET_OUTSIDE_SHARE = 0.15
REPEATS = 3


def write_dataset(root: Path, count: int, class_names) -> None:
    import numpy as np
    from PIL import Image
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("\n".join(class_names) + "\n")
    rng = np.random.default_rng(0)
    for i in range(count):
        small = rng.integers(0, 256, (6, 8, 3)).astype(np.uint8)
        image = Image.fromarray(small).resize(IMAGE_HW[::-1], Image.BICUBIC)
        image.save(root / "images" / f"{i:05d}.jpg", quality=90)
        label = rng.integers(0, len(class_names), (6, 8)).astype(np.uint8)
        Image.fromarray(label).resize(IMAGE_HW[::-1], Image.NEAREST).save(
            root / "labels" / f"{i:05d}.png")


def random_model(config=None):
    """A GroupViT (default: the full model) with random weights."""
    import jax
    import numpy as np
    from groupvit_jax.models.config import GroupViTConfig
    from groupvit_jax.models.model import GroupViT
    from groupvit_jax.checkpoints.pretrained import PretrainedGroupViT
    config = config or GroupViTConfig()
    size = config.vision.image_size
    variables = jax.jit(GroupViT(config).init)(
        jax.random.key(0), np.zeros((1, size, size, 3), np.float32),
        np.zeros((1, config.text.context_length), np.int32))
    return PretrainedGroupViT(config, variables)


def measure(images: int, config=None) -> dict:
    """One evaluation of the `config` model (default: the full one) on this process's
    devices; runs in the child processes. Each time is the best of REPEATS runs (a
    shared machine only ever adds time)."""
    import jax
    import numpy as np
    from groupvit_jax.evaluation import datasets, segmentation
    from groupvit_jax.models.pixels import normalize_pixels

    model = random_model(config)
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(Path(tmp), images + 1, datasets.VOC_CLASSES)
        dataset = datasets.folder(tmp)
        predictor = segmentation.make_predictor(model, dataset, 0.95)
        segmentation.evaluate(predictor, dataclass_slice(dataset, 0, 1), log=None)  # compile
        calls = []  # the shape of every tower batch one evaluation runs
        window_pass = predictor._window_pass

        def counted(windows, hw, *rest):
            calls.append(windows.shape)
            return window_pass(windows, hw, *rest)
        predictor._window_pass = counted
        timed = dataclass_slice(dataset, 1, images + 1)
        totals = []
        for _ in range(REPEATS):
            calls.clear()
            start = time.perf_counter()
            results = segmentation.evaluate(predictor, timed, log=None)
            totals.append(time.perf_counter() - start)

    # The tower alone: the same calls on same-shaped window batches, dispatched back to
    # back like the evaluation's, returning what the scoring reads.
    def tower_outputs(variables, windows):
        out = model.module.apply(variables, normalize_pixels(windows), method="encode_image")
        return out["soft_maps"], out["segment_embeds"], out["image_embeds"]
    encode = jax.jit(tower_outputs)
    batches = {shape: jax.device_put(np.zeros(shape, np.uint8), predictor._windows)
               for shape in set(calls)}
    for pixels in batches.values():
        jax.block_until_ready(encode(predictor._variables, pixels))
    towers = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        jax.block_until_ready([encode(predictor._variables, batches[s]) for s in calls])
        towers.append(time.perf_counter() - start)
    total, tower = min(totals), min(towers)
    return {"devices": jax.local_device_count(), "platform": jax.default_backend(),
            "images": images, "max_window_batch": predictor.window_batch,
            "tower_calls": len(calls), "total_s": total, "tower_s": tower,
            "all_total_s": totals, "all_tower_s": towers,
            "total_s_spread": hygiene.spread(totals), "tower_s_spread": hygiene.spread(towers),
            "images_per_s": images / total, "outside_tower_share": 1 - tower / total,
            "mIoU_random_model": results["mIoU"]}


def dataclass_slice(dataset, start: int, stop: int):
    import dataclasses
    return dataclasses.replace(dataset, pairs=dataset.pairs[start:stop])


def run_child(images: int, fake_devices: int | None) -> dict:
    env = dict(os.environ)
    if fake_devices:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                            f" --xla_force_host_platform_device_count={fake_devices}").strip()
        env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-m", "experiments.benchmarks.eval_speed",
                           "--child", "--images", str(images)],
                          env=env, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"child run failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_integer("images", 50, "generated images evaluated", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_string("out", str(DEFAULT_OUT), "JSON results path", flag_values=fv)
    flags.DEFINE_bool("child", False, "internal: one measurement, printed as JSON",
                      flag_values=fv)
    hygiene.define_flags(fv)


def _run(args: flags.FlagValues) -> int:
    if args.child:
        print(json.dumps(measure(args.images)))
        return cli.OK
    load = hygiene.OutsideLoad()
    rows = {"default devices": run_child(args.images, None),
            "8 fake CPU devices": run_child(args.images, 8)}
    print(f"{'run':<20} {'dev':>3} {'images/s':>9} {'total s':>8} {'tower s':>8} "
          f"{'outside tower':>13}")
    for name, r in rows.items():
        print(f"{name:<20} {r['devices']:>3} {r['images_per_s']:>9.2f} {r['total_s']:>8.2f} "
              f"{r['tower_s']:>8.2f} {100 * r['outside_tower_share']:>12.1f}%")
    print(f"target: outside the tower < {100 * TARGET_OUTSIDE_SHARE:.0f}% of the time")
    return hygiene.finish({
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "image_hw": IMAGE_HW, "target_outside_tower_share": TARGET_OUTSIDE_SHARE,
        "runs": rows}, load, args.out, args.allow_contended, REPEATS)


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
