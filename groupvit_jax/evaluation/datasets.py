"""Segmentation datasets from the layouts users have on disk, with the released class names.

- voc: `VOCdevkit/VOC2012` (or `VOCdevkit`): JPEGImages/*.jpg, SegmentationClass/*.png
  (palette indices, 255 = ignore), ImageSets/Segmentation/val.txt. 1,449 images.
- context: `VOCdevkit/VOC2010`: JPEGImages, SegmentationClassContext/*.png as mmseg's
  converter writes them (0 = background, 1..59), ImageSets/SegmentationContext/val.txt.
- coco_object: the COCO root: images/val2017/*.jpg and
  annotations/val2017/*_instanceTrainIds.png (0 = background, 1..80), written from
  COCO-Stuff-164k by `python -m groupvit_jax.evaluation.coco_object`.
- folder: DIR/images/<stem>.<jpg|jpeg|png|bmp|webp>, DIR/labels/<stem>.png (single-channel
  or palette, 255 = ignore) and DIR/classes.txt: one class name per line, in label order;
  when the first line is "background", label 0 is background (no text query) and the
  rest are the classes.

Class names are the ones the released evaluation prompted with ("table", "plant",
"monitor", ...), so they are part of the protocol.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from etils import epath
from PIL import Image

from input_pipeline import paths
from input_pipeline.eval_readers import read_image

BACKGROUND = "background"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

VOC_CLASSES = (
    BACKGROUND, "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "table", "dog", "horse", "motorbike", "person", "plant", "sheep", "sofa", "train",
    "monitor")
CONTEXT_CLASSES = (
    BACKGROUND, "airplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat",
    "book", "bottle", "building", "bus", "cabinet", "car", "cat", "ceiling", "chair", "cloth",
    "computer", "cow", "cup", "curtain", "dog", "door", "fence", "floor", "flower", "food",
    "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse", "person",
    "plate", "platform", "plant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky",
    "snow", "sofa", "table", "track", "train", "tree", "truck", "monitor", "wall", "water",
    "window", "wood")
COCO_OBJECT_CLASSES = (
    BACKGROUND, "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack",
    "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball",
    "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket",
    "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")

# Background thresholds of the released numbers (the paper's text says 0.9 / 0.5).
DEFAULT_BG_THRESH = {"voc": 0.95, "context": 0.35, "coco_object": 0.95, "folder": 0.95}


Pair = tuple[epath.Path, epath.Path]


@dataclasses.dataclass(frozen=True)
class SegmentationDataset:
    name: str
    class_names: tuple[str, ...]  # label order; "background" first when with_background
    with_background: bool
    pairs: tuple[Pair, ...]  # (image, label PNG)

    @property
    def query_names(self) -> tuple[str, ...]:
        """The classes prompted for (all but background)."""
        return self.class_names[1:] if self.with_background else self.class_names

    def __len__(self) -> int:
        return len(self.pairs)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 [H, W, 3], labels uint8 [H, W]); sizes must agree."""
        image_path, label_path = self.pairs[index]
        image, label = read_image(image_path), read_label(label_path)
        if image.shape[:2] != label.shape:
            raise ValueError(f"{label_path}: labels are {label.shape[1]}x{label.shape[0]} but "
                             f"{image_path} is {image.shape[1]}x{image.shape[0]}.")
        return image, label


def read_label(path: epath.PathLike) -> np.ndarray:
    """A label PNG (local or gs://) -> uint8 [H, W]: palette indices or grey values, never
    colours."""
    with paths.as_path(path).open("rb") as f, Image.open(f) as im:
        if im.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(f"{path}: label images must be single-channel or palette PNGs, "
                             f"got mode {im.mode}.")
        label = np.array(im)
    if label.max(initial=0) > 255:
        raise ValueError(f"{path}: label values up to {label.max()} do not fit 0..255.")
    return label.astype(np.uint8)


def _require_dirs(*folders: epath.Path) -> None:
    missing = [str(p) for p in folders if not p.exists()]
    if missing:
        raise FileNotFoundError(f"missing: {', '.join(missing)}.")


def _missing_error(what: str, missing: list[str]) -> FileNotFoundError:
    shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
    return FileNotFoundError(f"{len(missing)} {what}: {shown}")


def _listed(folder: epath.Path) -> set[epath.Path]:
    """The folder's entries: one listing, not a request per file in a bucket."""
    return set(folder.iterdir())


def _split_pairs(root: epath.Path, split_file: epath.Path, label_dir: str
                 ) -> tuple[Pair, ...]:
    """Pairs for the ids of a split file (JPEGImages/<id>.jpg, <label_dir>/<id>.png)."""
    _require_dirs(root / "JPEGImages", root / label_dir, split_file)
    ids = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{split_file}: no image ids.")
    pairs = tuple((root / "JPEGImages" / f"{i}.jpg", root / label_dir / f"{i}.png") for i in ids)
    present = _listed(root / "JPEGImages") | _listed(root / label_dir)
    missing = [str(p) for pair in pairs for p in pair if p not in present]
    if missing:
        raise _missing_error(f"files named by {split_file} are missing", missing)
    return pairs


def voc(data_dir: epath.PathLike) -> SegmentationDataset:
    root = paths.as_path(data_dir)
    if (root / "VOC2012").is_dir():
        root = root / "VOC2012"
    pairs = _split_pairs(root, root / "ImageSets/Segmentation/val.txt", "SegmentationClass")
    return SegmentationDataset("voc", VOC_CLASSES, True, pairs)


def context(data_dir: epath.PathLike) -> SegmentationDataset:
    root = paths.as_path(data_dir)
    if (root / "VOC2010").is_dir():
        root = root / "VOC2010"
    pairs = _split_pairs(root, root / "ImageSets/SegmentationContext/val.txt",
                         "SegmentationClassContext")
    return SegmentationDataset("context", CONTEXT_CLASSES, True, pairs)


def _matched_pairs(images: list[epath.Path], label_dir: epath.Path,
                   label_name: Callable[[str], str], label_glob: str) -> tuple[Pair, ...]:
    """Pairs images with labels by stem; every image needs a label and vice versa."""
    if not images:
        raise FileNotFoundError(f"no images ({'/'.join(IMAGE_SUFFIXES)}) found.")
    pairs = tuple((image, label_dir / label_name(image.stem)) for image in images)
    labels = [label for _, label in pairs]
    if len(set(labels)) != len(labels):
        twins = sorted({str(i) for i, label in pairs if labels.count(label) > 1})
        raise ValueError(f"images share a stem (one label each is needed): {twins[:5]}")
    present = set(label_dir.glob(label_glob))
    missing = [str(label) for label in labels if label not in present]
    if missing:
        raise _missing_error("images have no label file", missing)
    extra = sorted(present - set(labels))
    if extra:
        raise _missing_error("label files have no image", [str(p) for p in extra])
    return pairs


def coco_object(data_dir: epath.PathLike) -> SegmentationDataset:
    root = paths.as_path(data_dir)
    image_dir, label_dir = root / "images/val2017", root / "annotations/val2017"
    _require_dirs(image_dir, label_dir)
    images = sorted(image_dir.glob("*.jpg"))
    pairs = _matched_pairs(images, label_dir, lambda stem: f"{stem}_instanceTrainIds.png",
                           "*_instanceTrainIds.png")
    return SegmentationDataset("coco_object", COCO_OBJECT_CLASSES, True, pairs)


def read_class_names(path: epath.PathLike, unique: bool = True) -> tuple[str, ...]:
    """One name per line, in label order. Segmentation classes must be unique (a
    prediction names one class); classification allows repeats (`unique=False`):
    ImageNet's own words repeat ("crane")."""
    path = paths.as_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: class names file not found.")
    names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    if not names or names == (BACKGROUND,):
        raise ValueError(f"{path}: no class names (expected one per line, in label order).")
    if unique and len(set(names)) != len(names):
        raise ValueError(f"{path}: repeated class names.")
    return names


def folder(data_dir: epath.PathLike) -> SegmentationDataset:
    root = paths.as_path(data_dir)
    _require_dirs(root / "images", root / "labels", root / "classes.txt")
    names = read_class_names(root / "classes.txt")
    images = sorted(p for p in (root / "images").iterdir()
                    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    pairs = _matched_pairs(images, root / "labels", lambda stem: f"{stem}.png", "*.png")
    return SegmentationDataset("folder", names, names[0] == BACKGROUND, pairs)


READERS: dict[str, Callable[[epath.PathLike], SegmentationDataset]] = {
    "voc": voc, "context": context, "coco_object": coco_object, "folder": folder}


def load(name: str, data_dir: epath.PathLike) -> SegmentationDataset:
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(READERS)}.")
    return READERS[name](data_dir)
