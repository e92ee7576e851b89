"""The main job for now: build GroupViT, group a generated scene, draw the groups.

    make run    # random weights, 448x448 scene, pictures in out/quickstart
    make run ARGS="--checkpoint group_vit_gcc_yfcc_30e.pth --image photo.jpg"

One image-tower pass gives the per-stage assignment maps and the segment
embeddings; the chained soft maps say which final group owns each pixel.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
from PIL import Image

import groupvit_jax as gv
from groupvit_jax.segments import group_labels

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def generated_scene(size: int, seed: int = 0) -> np.ndarray:
    """A uint8 [size, size, 3] scene: textured ground and sky, a disc, a box, a bar."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / size
    img = np.where((y > 0.55)[..., None], [90, 140, 60], [150, 190, 235]).astype(np.float32)
    img += rng.normal(0, 12, img.shape)
    img[(x - 0.3) ** 2 + (y - 0.35) ** 2 < 0.02] = [230, 200, 40]
    img[(abs(x - 0.68) < 0.14) & (abs(y - 0.62) < 0.16)] = [180, 40, 40]
    img[(abs(x - 0.5) < 0.45) & (abs(y - 0.9) < 0.03)] = [70, 70, 80]
    return np.clip(img, 0, 255).astype(np.uint8)


def normalise(image_uint8: np.ndarray) -> np.ndarray:
    return ((image_uint8.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD)[None]


def palette(n: int) -> np.ndarray:
    hues = np.linspace(0, 1, n, endpoint=False)
    rgb = np.stack([np.abs(hues * 6 - 3) - 1, 2 - np.abs(hues * 6 - 2), 2 - np.abs(hues * 6 - 4)], -1)
    return (np.clip(rgb, 0, 1) * 220 + 20).astype(np.uint8)


def random_model(seed: int = 0) -> gv.PretrainedGroupViT:
    config = gv.GroupViTConfig()
    module = gv.GroupViT(config)
    size = config.vision.image_size
    variables = jax.jit(module.init)(jax.random.key(seed), np.zeros((1, size, size, 3), np.float32),
                                     np.zeros((1, config.text.context_length), np.int32))
    return gv.PretrainedGroupViT(config, variables)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="NVlabs .pth, Hugging Face folder or our export")
    parser.add_argument("--image", help="an image file; default: a generated scene")
    parser.add_argument("--size", type=int, default=448, help="side of the square input")
    parser.add_argument("--out", default="out/quickstart", help="folder for the pictures")
    args = parser.parse_args(argv)

    t0 = time.time()
    if args.checkpoint:
        model, origin = gv.load_pretrained(args.checkpoint), args.checkpoint
    else:
        model, origin = random_model(), "random weights"
    n = sum(x.size for x in jax.tree.leaves(model.variables["params"]))
    print(f"model: {n / 1e6:.1f}M parameters from {origin} ({time.time() - t0:.1f} s)")

    if args.image:
        image = np.asarray(Image.open(args.image).convert("RGB").resize((args.size, args.size),
                                                                        Image.BILINEAR))
    else:
        image = generated_scene(args.size)
    patch = model.config.vision.patch_size
    grid = (args.size // patch, args.size // patch)
    out = model.encode_image(normalise(image))  # compile
    t0 = time.time()
    out = jax.block_until_ready(model.encode_image(normalise(image)))
    seconds = time.time() - t0
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "input.png")
    pictures = [folder / "input.png"]
    # The first stage's groups, then the final segments (all stages chained).
    for stages, name in ((1, "groups_stage1.png"), (len(out["soft_maps"]), "groups.png")):
        labels = np.asarray(group_labels(out["soft_maps"][:stages], grid, image.shape[:2]))[0]
        colours = palette(out["soft_maps"][stages - 1].shape[1])
        Image.fromarray((0.45 * image + 0.55 * colours[labels]).astype(np.uint8)).save(
            folder / name)
        pictures.append(folder / name)
    used = np.unique(labels)
    print(f"one {args.size}x{args.size} image-tower pass: {seconds:.3f} s")
    print("soft maps per stage:", [tuple(m.shape) for m in out["soft_maps"]])
    print(f"segment embeddings: {tuple(out['segment_embeds'].shape)}; "
          f"{len(used)} of {colours.shape[0]} final groups own pixels")
    print("pictures:", ", ".join(map(str, pictures)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
