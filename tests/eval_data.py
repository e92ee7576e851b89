"""Small segmentation datasets on disk, for the evaluation tests and their subprocesses."""
from pathlib import Path

import numpy as np
from PIL import Image


def write_folder_dataset(root: Path) -> Path:
    """Three images of odd sizes with a red square and a blue disc, in the "folder"
    layout (images/, labels/, classes.txt); label 255 marks ignored pixels."""
    root = Path(root)
    (root / "images").mkdir()
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("background\nred square\nblue disc\n")
    rng = np.random.default_rng(0)
    for name, hw in (("wide", (300, 410)), ("tall", (460, 333)), ("odd", (217, 301))):
        image = np.full((*hw, 3), 90, np.uint8)
        label = np.zeros(hw, np.uint8)
        image[20:120, 40:160] = (220, 30, 30)
        label[20:120, 40:160] = 1
        yy, xx = np.mgrid[:hw[0], :hw[1]]
        disc = (yy - 150) ** 2 + (xx - 200) ** 2 < 50 ** 2
        image[disc] = (30, 30, 220)
        label[disc] = 2
        label[:3] = 255
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{name}.jpg")
        Image.fromarray(label).save(root / "labels" / f"{name}.png")
    return root


def blocky_images():
    """Three images of blocks (2, 2 and 4 protocol windows, one of odd size)."""
    rng = np.random.default_rng(3)
    out = []
    for hw in ((375, 500), (500, 333), (217, 901)):
        small = rng.integers(0, 256, (5, 7, 3)).astype(np.float32)
        out.append(np.kron(small, np.ones((80, 140, 1)))[:hw[0], :hw[1]].astype(np.uint8))
    return out
