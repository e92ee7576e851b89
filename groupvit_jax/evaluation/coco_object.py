"""COCO-Object labels from COCO-Stuff-164k, as the released converter made them.

    python -m groupvit_jax.evaluation.coco_object --coco_dir=COCO_DIR [--splits=val2017] [--overwrite]

COCO_DIR holds images/<split>/ and the COCO-Stuff label PNGs annotations/<split>/<id>.png
(0-based COCO ids: things 0..89 with COCO's gaps, stuff 91..181, 255 unlabelled). Each
becomes annotations/<split>/<id>_instanceTrainIds.png: the 80 things -> 1..80 in COCO's
order, every stuff id and 255 -> 0 (background; COCO-Object has no ignored pixels).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from absl import flags
from PIL import Image

from input_pipeline import cli

# 0-based COCO-Stuff ids of the 80 COCO things (category ids 1..90 with COCO's gaps).
THING_IDS = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 26,
    27, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 45, 46, 47, 48, 49, 50, 51, 52,
    53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 66, 69, 71, 72, 73, 74, 75, 76, 77, 78, 79,
    80, 81, 83, 84, 85, 86, 87, 88, 89)
STUFF_IDS = range(91, 182)
UNLABELLED = 255
SUFFIX = "_instanceTrainIds.png"


def _lookup_table() -> tuple[np.ndarray, np.ndarray]:
    table = np.zeros(256, np.uint8)
    table[list(THING_IDS)] = np.arange(1, len(THING_IDS) + 1)
    known = np.zeros(256, bool)
    known[list(THING_IDS) + list(STUFF_IDS) + [UNLABELLED]] = True
    return table, known


TABLE, KNOWN = _lookup_table()


def convert_label(stuff: np.ndarray, source: str = "<array>") -> np.ndarray:
    """COCO-Stuff ids (uint8 [H, W]) -> COCO-Object labels (0 = background, 1..80)."""
    if stuff.dtype != np.uint8 or stuff.ndim != 2:
        raise ValueError(f"{source}: expected a uint8 [H, W] label map, got {stuff.dtype} "
                         f"{stuff.shape}.")
    unknown = np.unique(stuff[~KNOWN[stuff]])
    if unknown.size:
        # The released converter would have kept these as they are; none occur in COCO-Stuff.
        raise ValueError(f"{source}: ids {unknown[:5].tolist()} are neither COCO things, "
                         f"stuff nor {UNLABELLED}.")
    return TABLE[stuff]


def convert_file(src: Path, overwrite: bool) -> Path:
    out = src.with_name(src.stem + SUFFIX)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it.")
    with Image.open(src) as im:
        stuff = np.array(im)
    Image.fromarray(convert_label(stuff, str(src))).save(out)
    return out


def convert_split(coco_dir: Path, split: str, overwrite: bool = False, workers: int = 8
                  ) -> list[Path]:
    label_dir = coco_dir / "annotations" / split
    if not label_dir.is_dir():
        raise FileNotFoundError(f"{label_dir}: missing (COCO-Stuff label PNGs expected).")
    sources = sorted(p for p in label_dir.glob("*.png") if not p.name.endswith(SUFFIX))
    if not sources:
        raise FileNotFoundError(f"{label_dir}: no COCO-Stuff label PNGs.")
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: convert_file(p, overwrite), sources))


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("coco_dir", None, "COCO-Stuff-164k: images/<split>/, annotations/<split>/",
                        flag_values=fv, required=True)
    flags.DEFINE_list("splits", ["val2017"], "comma-separated splits to convert", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "replace label maps already converted", flag_values=fv)


def _run(args: flags.FlagValues) -> int:
    coco_dir = Path(args.coco_dir)
    for split in args.splits:
        written = convert_split(coco_dir, split, args.overwrite)
        print(f"{split}: wrote {len(written)} label maps to {coco_dir / 'annotations' / split}")
    return cli.OK


main = cli.binary(define_flags, _run)


if __name__ == "__main__":
    cli.run_main(main)
