"""Segment one image with free-form class names and draw what GroupViT sees.

    python -m groupvit_jax.demo --checkpoint group_vit_gcc_yfcc_30e.pth --image photo.jpg \
        --classes "cat,dog,grass" --out out/demo [--bg_thresh 0.95] [--no_background]

Writes input.png, prediction.png (classes blended over the image, names on their
regions), groups_stage1.png and groups_stage2.png (the 64 first-stage groups and the 8
final segments; a one-stage model has only the first, a plain ViT none) and legend.png.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

import groupvit_jax as gv
from groupvit_jax import visualize
from groupvit_jax.evaluation import predict_segmentation
from groupvit_jax.evaluation.predict import DEFAULT_TEMPLATE
from groupvit_jax.evaluation.resize import (RELEASED, Scale, add_scale_flags, normalize_pixels,
                                            scale_from_flags)
from groupvit_jax.segments import group_labels
from input_pipeline.eval_readers import read_image, rescaled_size


def parse_classes(text: str) -> list[str]:
    """'cat, dog,grass' -> ['cat', 'dog', 'grass']; empty or repeated names are errors."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--classes {text!r} names no class; give e.g. 'cat,dog,grass'.")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"--classes repeats {repeated}.")
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
    soft_maps = model.encode_image(normalize_pixels(resized[None]))["soft_maps"]
    return [nearest_resize(np.asarray(group_labels(soft_maps[:stage], grid, resized_hw))[0],
                           image.shape[:2])
            for stage in range(1, len(soft_maps) + 1)]


def run(model, image: np.ndarray, class_names: Sequence[str], out_dir: str | Path,
        bg_thresh: float = 0.95, with_background: bool = True,
        template: str = DEFAULT_TEMPLATE,
        scale: Scale = RELEASED) -> tuple[dict[str, Path], np.ndarray]:
    """Predicts, draws and writes the demo's pictures; returns ({name: path}, labels)."""
    out = Path(out_dir)
    labels = predict_segmentation(model, image, class_names, bg_thresh=bg_thresh, scale=scale,
                                  with_background=with_background, template=template)
    ids = visualize.class_ids(labels, len(class_names), with_background)
    pictures = {"input": image,
                "prediction": visualize.render_segmentation(image, labels, class_names,
                                                            with_background)}
    for stage, groups in enumerate(stage_group_maps(model, image, scale), start=1):
        num_groups = model.config.vision.num_output_groups[stage - 1]
        pictures[f"groups_stage{stage}"] = visualize.render_groups(image, groups, num_groups)
    pictures["legend"] = visualize.render_legend(class_names, np.unique(ids[ids >= 0]))
    return {name: visualize.save_png(out / f"{name}.png", array)
            for name, array in pictures.items()}, labels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True,
                        help="NVlabs .pth, Hugging Face folder or our export")
    parser.add_argument("--image", required=True)
    parser.add_argument("--classes", required=True, help='comma-separated, e.g. "cat,dog,grass"')
    parser.add_argument("--out", required=True, help="folder for the pictures")
    parser.add_argument("--bg_thresh", type=float, default=0.95,
                        help="background below this score (VOC 0.95, Context 0.35)")
    parser.add_argument("--no_background", action="store_true",
                        help="every pixel gets a class; no background")
    parser.add_argument("--template", default=DEFAULT_TEMPLATE,
                        help="prompt with {} for the class, or a template set name")
    add_scale_flags(parser)
    args = parser.parse_args(argv)
    try:
        class_names = parse_classes(args.classes)
        if not Path(args.image).is_file():
            raise FileNotFoundError(f"{args.image}: image not found.")
        image = read_image(args.image)
        model = gv.load_pretrained(args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    written, labels = run(model, image, class_names, args.out, args.bg_thresh,
                          not args.no_background, args.template, scale_from_flags(args))
    ids = visualize.class_ids(labels, len(class_names), not args.no_background)
    found = ", ".join(f"{class_names[c]} {100 * np.mean(ids == c):.1f}%"
                      for c in np.unique(ids[ids >= 0]))
    print(f"{image.shape[1]}x{image.shape[0]} image; classes found: {found or 'none'}")
    for path in written.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
