"""Zero-shot classification on ImageNet-layout folders, as the released code scored it.

Layouts (`read_image_folder`):
- class per subfolder (`train/`-style): `DIR/<class>/<image>`; labels are the subfolders
  in sorted order, images are visited round robin over the classes. Names come from a
  names file (one per line, in label order) or, without one, from the subfolder names
  with "_" read as a space.
- a flat folder with a labels file (`val/`-style): every non-empty line names an image
  (relative to DIR) and its 0-based label, separated by whitespace
  ("ILSVRC2012_val_00000001.JPEG 65") or by a comma (CSV; a first line whose label is
  not a number is taken as the header). A names file is required. Caffe's ImageNet
  `val.txt` has this form and numbers the classes in sorted-synset order, the order of
  CLIP's ImageNet class names. The devkit's one-column ground truth (1-based ids in the
  devkit's own order) is not accepted.

- a TFDS dataset (`read_tfds`, `tfds:NAME[:SPLIT]`, e.g. `tfds:imagenet2012`, split
  "validation" unless given) that TFDS has prepared, with an Image feature "image" and a
  ClassLabel "label": images in the split's order. Names come from a names file, or
  without one from the ClassLabel's names. imagenet2012's names are WordNet ids
  ("n01440764") and its labels are in sorted-synset order: pass CLIP's class names, as
  for Caffe's `val.txt`.

Scoring: class embeddings are the projected text embeddings averaged over the templates
(`IMAGENET_7`) and then L2-normalised; an image's score for a class is the cosine with
its pooled image embedding (no temperature). Images are resized so the short side is
256/224 of the crop (PIL bilinear, as torchvision's Resize on PIL images), centre-cropped
to the model's training size (224) and ImageNet-normalised.
"""
from __future__ import annotations

import dataclasses
import io
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Sequence

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils
from PIL import Image

from groupvit_jax.checkpoints.pretrained import PretrainedGroupViT
from groupvit_jax.evaluation.datasets import IMAGE_SUFFIXES, read_class_names
from groupvit_jax.evaluation.metrics import check_limit
from groupvit_jax.models.model import l2_normalize
from groupvit_jax.models.text import trimmed_length
from groupvit_jax.multihost import host_local
from input_pipeline import paths as path_lib
from input_pipeline.eval_readers import host_share
from input_pipeline import mixture
from input_pipeline.templates import IMAGENET_7

# torchvision's ToTensor + Normalize arithmetic, as the released ImageNet evaluation did
# (the segmentation protocol normalises as mmcv does, in evaluation/resize.py).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
TEXT_CHUNK = 256  # prompts per text-tower call at most


@dataclasses.dataclass(frozen=True)
class ClassificationSet:
    paths: tuple[epath.Path, ...]  # the image files; () for a TFDS dataset
    labels: np.ndarray  # int64 [N], indices into class_names
    class_names: tuple[str, ...]
    # A TFDS dataset's first `limit` (None: all) images, encoded, in order.
    encoded: Callable[[int | None], Iterator[bytes]] | None = None

    def images(self, indices: Sequence[int] | None = None) -> Iterable[epath.Path | bytes]:
        """The images at the ascending `indices` (None: all), as `preprocess` takes them."""
        if self.encoded is None:
            return self.paths if indices is None else [self.paths[i] for i in indices]
        if indices is None:
            return self.encoded(None)
        wanted = set(indices)
        return (image for i, image in enumerate(self.encoded(max(indices, default=-1) + 1))
                if i in wanted)


def _is_image(path: epath.Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _read_labels_file(path: epath.Path, num_classes: int) -> list[tuple[str, int]]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: labels file not found.")
    entries = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")] if "," in line else line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}:{lineno}: expected 'IMAGE LABEL' or 'IMAGE,LABEL', "
                             f"got {line!r}.")
        try:
            label = int(fields[1])
        except ValueError:
            if lineno == 1 and "," in line:
                continue  # a CSV header
            raise ValueError(f"{path}:{lineno}: label {fields[1]!r} is not an integer.") from None
        if not 0 <= label < num_classes:
            raise ValueError(f"{path}:{lineno}: label {label} is outside [0, {num_classes}) "
                             f"for the {num_classes} class names.")
        entries.append((fields[0], label))
    if not entries:
        raise ValueError(f"{path}: no 'IMAGE LABEL' lines.")
    return entries


def _flat_folder(root: epath.Path, labels_file: epath.Path, class_names: Sequence[str]
                 ) -> ClassificationSet:
    entries = _read_labels_file(labels_file, len(class_names))
    paths = tuple(root / name for name, _ in entries)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{labels_file}: {len(missing)} of its {len(paths)} images are "
                                f"not in {root}, e.g. {missing[:3]}.")
    return ClassificationSet(paths, np.array([label for _, label in entries], np.int64),
                             tuple(class_names))


def _class_folders(root: epath.Path, names_file: epath.Path | None) -> ClassificationSet:
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise FileNotFoundError(f"{root}: no class subfolders; for a flat folder of images "
                                "pass a labels file.")
    if names_file is None:
        names = tuple(f.name.replace("_", " ") for f in folders)
    else:
        names = read_class_names(names_file, unique=False)
        if len(names) != len(folders):
            raise ValueError(f"{names_file} has {len(names)} class names, {root} has "
                             f"{len(folders)} class subfolders.")
    per_class = [sorted(p for p in folder.iterdir() if _is_image(p)) for folder in folders]
    # Round robin over the classes, so that the first N images (--limit) span them all.
    order = sorted((i, label) for label, images in enumerate(per_class) for i in range(len(images)))
    paths = [per_class[label][i] for i, label in order]
    labels = [label for _, label in order]
    if not paths:
        raise FileNotFoundError(f"{root}: class subfolders hold no images ({IMAGE_SUFFIXES}).")
    return ClassificationSet(tuple(paths), np.array(labels, np.int64), names)


def read_image_folder(data_dir: epath.PathLike, class_names: epath.PathLike | None = None,
                      labels: epath.PathLike | None = None) -> ClassificationSet:
    """A class-per-subfolder tree, or (with `labels`) a flat folder, local or gs://; see
    the module doc."""
    root = path_lib.as_path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: data directory not found.")
    if labels is None:
        names_file = None if class_names is None else path_lib.as_path(class_names)
        return _class_folders(root, names_file)
    if class_names is None:
        raise ValueError(f"a labels file ({labels}) needs a class names file too.")
    names = read_class_names(class_names, unique=False)
    return _flat_folder(root, path_lib.as_path(labels), names)


def read_tfds(spec: str, class_names: epath.PathLike | None = None,
              data_dir: str | None = None) -> ClassificationSet:
    """`tfds:NAME[:SPLIT]` (split "validation" by default) from TFDS's `data_dir` (None:
    TFDS_DATA_DIR or its default); see the module doc."""
    import tensorflow_datasets as tfds

    builder, split, _ = mixture.prepared_split(spec, "validation", data_dir)
    features = builder.info.features
    image, label = (features[k] if k in features else None for k in ("image", "label"))
    if not isinstance(image, tfds.features.Image) or not isinstance(
            label, tfds.features.ClassLabel):
        raise ValueError(f"{spec}: needs an Image feature 'image' and a ClassLabel 'label'; "
                         f"has {features}")
    if class_names is None:
        names = tuple(n.replace("_", " ") for n in label.names)
    else:
        names = read_class_names(class_names, unique=False)
        if len(names) != label.num_classes:
            raise ValueError(f"{class_names} has {len(names)} class names, {spec} has "
                             f"{label.num_classes} classes.")
    labels_only = builder.as_dataset(split=split, shuffle_files=False,
                                     decoders=tfds.decode.PartialDecoding({"label": True}))
    labels = np.array([e["label"] for e in tfds.as_numpy(labels_only)], np.int64)

    def encoded(limit: int | None) -> Iterator[bytes]:
        ds = builder.as_dataset(split=split, shuffle_files=False,
                                decoders={"image": tfds.decode.SkipDecoding()})
        for example in tfds.as_numpy(ds.take(-1 if limit is None else limit)):
            yield example["image"]
    return ClassificationSet((), labels, names, encoded)


def read_dataset(data_dir: epath.PathLike, class_names: epath.PathLike | None = None,
                 labels: epath.PathLike | None = None,
                 tfds_data_dir: str | None = None) -> ClassificationSet:
    """`read_tfds` for `tfds:...`, else `read_image_folder`."""
    if str(data_dir).startswith(mixture.TFDS_PREFIX):
        if labels is not None:
            raise ValueError(f"{data_dir}: a TFDS dataset has its labels; drop the labels "
                             f"file {labels}.")
        return read_tfds(str(data_dir), class_names, tfds_data_dir)
    return read_image_folder(data_dir, class_names, labels)


def preprocess(image: epath.Path | bytes, crop: int) -> np.ndarray:
    """float32 [crop, crop, 3], ImageNet-normalised: short side to 256/224 * crop (PIL
    bilinear, long side truncated as torchvision does), then the centre crop. `image`:
    a file, or encoded bytes."""
    short = int(256 / 224 * crop)
    with (io.BytesIO(image) if isinstance(image, bytes) else image.open("rb")) as f, \
            Image.open(f) as opened:
        opened = opened.convert("RGB")
        w, h = opened.size
        size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        opened = opened.resize(size, Image.BILINEAR)
    # torchvision rounds the offset half to even (Python's round), e.g. 5.5 -> 6, 6.5 -> 6.
    left, top = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
    pixels = np.asarray(opened, np.float32)[top:top + crop, left:left + crop] / 255.0
    return (pixels - IMAGENET_MEAN) / IMAGENET_STD


def text_classifier(model, class_names: Sequence[str],
                    templates: Sequence[str] = IMAGENET_7) -> np.ndarray:
    """float32 [C, D]: per class, the projected text embeddings of its prompts averaged
    over the templates, then L2-normalised."""
    prompts = [t.format(name) for name in class_names for t in templates]
    tokens = model.tokenize(prompts)
    # The tower pools at end-of-text and is causal: the tokens after the longest prompt
    # change nothing, so it runs at that prompt's bucket length (the same on every host).
    tokens = tokens[:, :trimmed_length(tokens, tokens.shape[1])]
    # Fixed-size calls (one compilation), but no bigger than needed for short lists
    # (a segmentation dataset's 21 prompts).
    chunk_size = min(TEXT_CHUNK, len(tokens))
    embeds = []
    for start in range(0, len(tokens), chunk_size):
        chunk = tokens[start:start + chunk_size]
        padded = np.zeros((chunk_size, tokens.shape[1]), tokens.dtype)
        padded[:len(chunk)] = chunk
        embeds.append(np.asarray(model.encode_text(padded))[:len(chunk)])
    embeds = np.concatenate(embeds).reshape(len(class_names), len(templates), -1)
    return np.asarray(l2_normalize(embeds.mean(axis=1)))


def _image_batches(images: Iterable[epath.Path | bytes], crop: int, batch_size: int,
                   workers: int) -> Iterator[np.ndarray]:
    """Batches of preprocessed images; the next batch decodes while this one runs."""
    images = iter(images)
    with ThreadPoolExecutor(workers) as pool:
        pending = None
        while chunk := list(itertools.islice(images, batch_size)):
            futures = [pool.submit(preprocess, image, crop) for image in chunk]
            if pending is not None:
                yield np.stack([f.result() for f in pending])
            pending = futures
        if pending is not None:
            yield np.stack([f.result() for f in pending])


def topk_correct(scores: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """bool [N]: the label is among the k highest scores (ties: the lower class first)."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return (top == labels[:, None]).any(axis=1)


def batch_scores(model, dataset: ClassificationSet, templates: Sequence[str] = IMAGENET_7,
                 batch_size: int = 64, indices: Sequence[int] | None = None,
                 workers: int = 4) -> Iterator[np.ndarray]:
    """Per batch of the images at `indices` (default: all), in order: float32 [n, C]
    cosines with the class embeddings."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: at least 1 image per batch.")
    classifier = text_classifier(model, dataset.class_names, templates)
    crop = model.config.vision.image_size
    for batch in _image_batches(dataset.images(indices), crop, batch_size, workers):
        n = len(batch)
        # A full batch every call: one compiled shape, the padding's scores dropped.
        padded = np.zeros((batch_size, *batch.shape[1:]), np.float32)
        padded[:n] = batch
        image = np.asarray(l2_normalize(model.encode_image(padded)["image_embeds"]))[:n]
        yield image @ classifier.T


def _on_this_host(model):
    """`model`, or a copy on this host where its variables span several hosts (a
    training state's): hosts score different images, so each runs the tower alone."""
    leaves = jax.tree.leaves(model.variables)
    if all(x.is_fully_addressable for x in leaves if isinstance(x, jax.Array)):
        return model
    variables = jax.device_put(host_local(model.variables), jax.local_devices()[0])
    return PretrainedGroupViT(model.config, variables)


def evaluate(model, dataset: ClassificationSet, templates: Sequence[str] = IMAGENET_7,
             batch_size: int = 64, limit: int | None = None, workers: int = 4,
             progress: Callable[[int, int], None] | None = None) -> dict:
    """Top-1 / top-5 accuracy (in %) of `model` on the first `limit` images of `dataset`.

    Each host scores every `process_count`-th image (`images_this_host` of them); the hit
    counts are summed over hosts (every host returns the totals). The image tower runs on this host's devices only,
    so hosts need not run the same number of batches."""
    check_limit(limit)
    total = len(dataset.labels[:limit])
    if not total:
        raise ValueError("no images to evaluate.")
    model = _on_this_host(model)
    mine = [i for i, valid in host_share(list(range(total)), jax.process_index(),
                                         jax.process_count()) if valid]
    labels = dataset.labels[mine]
    k = min(5, len(dataset.class_names))
    top1, topk, done = 0, 0, 0
    for scores in batch_scores(model, dataset, templates, batch_size, mine, workers):
        truth = labels[done:done + len(scores)]
        top1 += int(topk_correct(scores, truth, 1).sum())
        topk += int(topk_correct(scores, truth, k).sum())
        done += len(scores)
        if progress is not None:
            progress(min(done * jax.process_count(), total), total)
    counts = np.array([top1, topk, done], np.int32)
    if jax.process_count() > 1:
        counts = np.asarray(multihost_utils.process_allgather(counts)).sum(0)
    top1, topk, total = (int(c) for c in counts)
    return {"top1": 100.0 * top1 / total, "top5": 100.0 * topk / total, "num_images": total,
            "num_classes": len(dataset.class_names), "images_this_host": done}


def evaluator(cfg, train_config):
    """Periodic evaluator "classification": zero-shot top-1/top-5 on an ImageNet-layout folder
    or a TFDS dataset. cfg: data_dir (a folder or tfds:NAME[:SPLIT]), and optionally
    class_names (file), labels (file, flat layout), tfds_data_dir, limit, batch_size."""
    del train_config  # the folder and the model's own image size say everything needed
    dataset = read_dataset(cfg.data_dir, cfg.get("class_names"), cfg.get("labels"),
                           cfg.get("tfds_data_dir"))
    limit, batch_size = cfg.get("limit"), cfg.get("batch_size", 64)

    def run(model):
        result = evaluate(model, dataset, batch_size=batch_size, limit=limit)
        return {"top1": result["top1"], "top5": result["top5"]}
    return run
