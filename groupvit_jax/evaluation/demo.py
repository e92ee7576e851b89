"""Segment one image with free-form class names and draw what GroupViT sees.

    python -m groupvit_jax.evaluation.demo --checkpoint=group_vit_gcc_yfcc_30e.pth --image=photo.jpg \
        --classes="cat,dog,grass" --out=out/demo [--bg_thresh=0.95] [--no_background]

Writes input.png, prediction.png (classes blended over the image, names on their
regions), groups_stage1.png and groups_stage2.png (the 64 first-stage groups and the 8
final segments; a one-stage model has only the first, a plain ViT none) and legend.png.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
from absl import flags
from etils import epath

import groupvit_jax as gv
from groupvit_jax.evaluation import pictures
from groupvit_jax.evaluation import predict_segmentation
from groupvit_jax.evaluation.predict import DEFAULT_TEMPLATE, add_template_flag
from groupvit_jax.evaluation.scoring import group_probabilities
from groupvit_jax.evaluation.resize import RELEASED, Scale, add_scale_flags, scale_from_flags
from input_pipeline import cli, paths
from input_pipeline.eval_readers import read_image, rescaled_size


def parse_classes(text: str) -> list[str]:
    """'cat, dog,grass' -> ['cat', 'dog', 'grass']; empty or repeated names are errors."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise cli.UsageError(f"--classes: {text!r} names no class; give e.g. 'cat,dog,grass'.")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise cli.UsageError(f"--classes: repeats {repeated}.")
    return names


def nearest_resize(labels: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Label map -> out_hw by nearest neighbour, sampling at pixel centres."""
    rows = ((np.arange(out_hw[0]) + 0.5) * labels.shape[0] / out_hw[0]).astype(np.int64)
    cols = ((np.arange(out_hw[1]) + 0.5) * labels.shape[1] / out_hw[1]).astype(np.int64)
    return labels[rows[:, None], cols[None, :]]


def stage_group_maps(model, image: np.ndarray, scale: Scale = RELEASED) -> list[np.ndarray]:
    """int32 [H, W] group of every pixel after each grouping stage (stage 2 chains both);
    none for a plain ViT.

    One tower pass on the image at the evaluation's scale (short side 448). The tower
    needs sides that are multiples of the patch size: the size is RESIZED to the nearest
    multiples (a stretch under half a patch) rather than padded, so no padding tokens
    compete for groups and the maps still cover the whole image. Groups are picked at
    that scale and the labels enlarged by nearest neighbour: upsampling 64 probability
    maps to a 12-megapixel photo would take gigabytes.
    """
    patch = model.config.vision.patch_size
    height, width = rescaled_size(*image.shape[:2], scale.short_side, scale.long_side_max)
    grid = (max(1, round(height / patch)), max(1, round(width / patch)))
    resized_hw = (grid[0] * patch, grid[1] * patch)
    resized = cv2.resize(image, resized_hw[::-1], interpolation=cv2.INTER_LINEAR)
    soft_maps = model.encode_image(resized[None])["soft_maps"]  # uint8: normalised by the model
    # The evaluation's own chaining and upsampling, so the demo's groups are its groups.
    return [nearest_resize(np.argmax(group_probabilities(soft_maps[:stage], grid, resized_hw)[0],
                                     -1).astype(np.int32), image.shape[:2])
            for stage in range(1, len(soft_maps) + 1)]


def run(model, image: np.ndarray, class_names: Sequence[str], out_dir: epath.PathLike,
        bg_thresh: float = 0.95, with_background: bool = True,
        template: str = DEFAULT_TEMPLATE,
        scale: Scale = RELEASED) -> tuple[dict[str, epath.Path], np.ndarray]:
    """Predicts, draws and writes the demo's pictures; returns ({name: path}, labels)."""
    out = paths.as_path(out_dir)
    labels = predict_segmentation(model, image, class_names, bg_thresh=bg_thresh, scale=scale,
                                  with_background=with_background, template=template)
    ids = pictures.class_ids(labels, len(class_names), with_background)
    drawn = {"input": image,
             "prediction": pictures.render_segmentation(image, labels, class_names,
                                                        with_background)}
    for stage, groups in enumerate(stage_group_maps(model, image, scale), start=1):
        num_groups = model.config.vision.num_output_groups[stage - 1]
        drawn[f"groups_stage{stage}"] = pictures.render_groups(image, groups, num_groups)
    drawn["legend"] = pictures.render_legend(class_names, np.unique(ids[ids >= 0]))
    return {name: pictures.save_png(out / f"{name}.png", array)
            for name, array in drawn.items()}, labels


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("checkpoint", None, "NVlabs .pth, Hugging Face folder or our export",
                        flag_values=fv, required=True)
    flags.DEFINE_string("image", None, "the image to segment", flag_values=fv, required=True)
    flags.DEFINE_string("classes", None, 'comma-separated, e.g. "cat,dog,grass"',
                        flag_values=fv, required=True)
    flags.DEFINE_string("out", None, "folder for the pictures", flag_values=fv, required=True)
    flags.DEFINE_float("bg_thresh", 0.95, "background below this score, in [0, 1] (VOC 0.95, "
                       "Context 0.35)", lower_bound=0, upper_bound=1, flag_values=fv)
    flags.DEFINE_bool("no_background", False, "every pixel gets a class; no background",
                      flag_values=fv)
    add_template_flag(fv)
    add_scale_flags(fv)


def _run(args: flags.FlagValues) -> int:
    class_names = parse_classes(args.classes)
    scale = scale_from_flags(args)
    cli.check_writable(args.out, folder=True)  # before the model's work, not after it
    if not paths.as_path(args.image).is_file():
        raise FileNotFoundError(f"{args.image}: image not found.")
    image = read_image(args.image)
    model = gv.load_pretrained(args.checkpoint)
    written, labels = run(model, image, class_names, args.out, args.bg_thresh,
                          not args.no_background, args.template, scale)
    ids = pictures.class_ids(labels, len(class_names), not args.no_background)
    found = ", ".join(f"{class_names[c]} {100 * np.mean(ids == c):.1f}%"
                      for c in np.unique(ids[ids >= 0]))
    print(f"{image.shape[1]}x{image.shape[0]} image; classes found: {found or 'none'}")
    for path in written.values():
        print(f"wrote {path}")
    return cli.OK


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
