"""Pictures of predictions and groups: the one renderer the demo and evaluation share.

Label maps follow the evaluation's convention: with background, 0 is background and
c + 1 is class_names[c]; without, c is class_names[c]. Class c always has colour
`palette(...)[c]`, so a class looks the same in every picture and in the legend.
"""
from __future__ import annotations

import functools
import io
import os
from typing import Sequence

import cv2
import numpy as np
from etils import epath
from PIL import Image, ImageDraw, ImageFont

from input_pipeline import paths

IGNORE_LABEL = 255  # "not annotated" in ground-truth maps: drawn like background
BOUNDARY_COLOUR = (255, 255, 255)
_MIN_LABEL_AREA = 0.01  # of the image: smaller extra regions of a class get no label


@functools.cache
def _colour_sequence() -> np.ndarray:
    """A fixed order of 390 colours, each the farthest (RGB distance) from all before it.

    Candidates are an 8-level RGB grid without greys (background stays unblended, so a
    grey class would look like background) and without near-black or near-white.
    """
    levels = np.linspace(40, 235, 8)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
    grid = grid[grid.max(1) - grid.min(1) >= 60]
    order = [int(np.argmin(np.linalg.norm(grid - (235, 40, 40), axis=1)))]  # start at red
    nearest = np.linalg.norm(grid - grid[order[0]], axis=1)
    for _ in range(len(grid) - 1):
        order.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, np.linalg.norm(grid - grid[order[-1]], axis=1))
    return np.round(grid[order]).astype(np.uint8)


def palette(n: int) -> np.ndarray:
    """uint8 [n, 3] distinct colours; entry i does not depend on n. The first 8
    are >= 120 apart in RGB, the first 64 >= 39; past 390 colours repeat."""
    sequence = _colour_sequence()
    return sequence[np.arange(n) % len(sequence)]


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}.")
    return image


def _ignore_label(num_labels: int) -> int | None:
    """255 means "not annotated", unless there are so many labels that it is a real one."""
    return IGNORE_LABEL if num_labels <= IGNORE_LABEL else None


def _check_labels(labels: np.ndarray, image: np.ndarray, num_labels: int, what: str,
                  ignore: int | None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != image.shape[:2]:
        raise ValueError(f"{what} map has shape {labels.shape}, the image {image.shape[:2]}.")
    bad = ((labels < 0) | (labels >= num_labels)) & (labels != ignore)
    if bad.any():
        raise ValueError(f"{what} map holds {labels[bad][0]}, outside [0, {num_labels})"
                         + ("." if ignore is None else f" and not the ignore label {ignore}."))
    return labels.astype(np.int64)


def _blend(image: np.ndarray, colour_ids: np.ndarray, colours: np.ndarray,
           alpha: float) -> np.ndarray:
    """Colours blended over the image where colour_ids >= 0; elsewhere the image."""
    out = image.astype(np.float32)
    drawn = colour_ids >= 0
    out[drawn] = (1 - alpha) * out[drawn] + alpha * colours[colour_ids[drawn]]
    return np.round(out).astype(np.uint8)


def _font(image_hw: tuple[int, int]) -> ImageFont.FreeTypeFont:
    # About 1/28 of the short side: readable on 500x375 VOC images and on 2048 ones.
    return ImageFont.load_default(size=max(10, round(min(image_hw) / 28)))


def class_ids(labels: np.ndarray, num_classes: int, with_background: bool) -> np.ndarray:
    """Label map -> class index map (-1 where background or ignored)."""
    labels = np.asarray(labels).astype(np.int64)
    ids = labels - 1 if with_background else labels.copy()
    ids[labels == _ignore_label(num_classes + with_background)] = -1
    return ids


def label_anchors(mask: np.ndarray) -> list[tuple[int, int]]:
    """(row, col) points deep inside a mask's regions, largest region first.

    The largest connected region always gets a point; others only if they cover at
    least 1% of the image. The point is where the distance to the region's border is
    (within 10% of) its maximum, the one nearest the region's centroid: a label there
    sits on the region, centred along elongated ones.
    """
    _, components, stats, centroids = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    rows, cols = np.indices(mask.shape)
    anchors = []
    for rank, k in enumerate(np.argsort(-areas, kind="stable")):
        if rank > 0 and areas[k] < _MIN_LABEL_AREA * mask.size:
            break
        region = np.pad(components == k + 1, 1).astype(np.uint8)  # border counts as outside
        distance = cv2.distanceTransform(region, cv2.DIST_L2, 5)[1:-1, 1:-1]
        deep = distance >= 0.9 * distance.max()
        col, row = centroids[k + 1]
        nearest = np.argmin(np.where(deep, (rows - row) ** 2 + (cols - col) ** 2, np.inf))
        anchors.append(tuple(int(i) for i in np.unravel_index(nearest, mask.shape)))
    return anchors


def _draw_tag(draw: ImageDraw.ImageDraw, centre: tuple[int, int], text: str,
              colour: Sequence[int], font, image_hw: tuple[int, int]):
    """White text with a dark outline on a box of the class colour, kept inside the image."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=1)
    pad = max(2, font.size // 5)
    width, height = right - left + 2 * pad, bottom - top + 2 * pad
    x0 = int(np.clip(centre[1] - width // 2, 0, max(image_hw[1] - width, 0)))
    y0 = int(np.clip(centre[0] - height // 2, 0, max(image_hw[0] - height, 0)))
    draw.rectangle((x0, y0, x0 + width - 1, y0 + height - 1), fill=tuple(int(v) for v in colour),
                   outline=(0, 0, 0))
    draw.text((x0 + pad - left, y0 + pad - top), text, font=font, fill=(255, 255, 255),
              stroke_width=1, stroke_fill=(0, 0, 0))


def render_segmentation(image_uint8: np.ndarray, labels: np.ndarray,
                        class_names: Sequence[str], with_background: bool = True,
                        alpha: float = 0.5, draw_names: bool = True) -> np.ndarray:
    """The label map blended over the image, each present class's name on its regions.

    Background and the ignore label 255 (with fewer than 255 labels) are left as the
    image. Returns uint8 [H, W, 3].
    """
    image = _check_image(image_uint8)
    num_labels = len(class_names) + with_background
    labels = _check_labels(labels, image, num_labels, "label", _ignore_label(num_labels))
    ids = class_ids(labels, len(class_names), with_background)
    colours = palette(len(class_names))
    out = _blend(image, ids, colours.astype(np.float32), alpha)
    if not draw_names:
        return out
    canvas = Image.fromarray(out)
    draw, font = ImageDraw.Draw(canvas), _font(image.shape[:2])
    for c in np.unique(ids[ids >= 0]):
        for anchor in label_anchors(ids == c):
            _draw_tag(draw, anchor, class_names[c], colours[c] // 2 + 32, font, image.shape[:2])
    return np.asarray(canvas)


def group_boundaries(group_labels: np.ndarray) -> np.ndarray:
    """bool [H, W]: pixels whose right or lower neighbour belongs to another group."""
    edge = np.zeros(group_labels.shape, bool)
    edge[:, :-1] |= group_labels[:, :-1] != group_labels[:, 1:]
    edge[:-1, :] |= group_labels[:-1, :] != group_labels[1:, :]
    return edge


def render_groups(image_uint8: np.ndarray, group_labels: np.ndarray, num_groups: int,
                  alpha: float = 0.5) -> np.ndarray:
    """Each group's distinct colour blended over the image, group borders drawn in white."""
    image = _check_image(image_uint8)
    groups = _check_labels(group_labels, image, num_groups, "group", ignore=None)
    out = _blend(image, groups, palette(num_groups).astype(np.float32), alpha)
    edge = group_boundaries(groups)
    # Thicker borders on big images, so they survive downscaled viewing.
    thickness = max(1, min(image.shape[:2]) // 300)
    if thickness > 1:
        edge = cv2.dilate(edge.astype(np.uint8), np.ones((thickness, thickness), np.uint8)) > 0
    out[edge] = BOUNDARY_COLOUR
    return out


def render_legend(class_names: Sequence[str], present: Sequence[int],
                  font_size: int = 16) -> np.ndarray:
    """One row per class: its colour swatch and name; classes absent from `present`
    (class indices into class_names) are greyed. Returns uint8 [H, W, 3]."""
    present = {int(c) for c in present}
    unknown = sorted(c for c in present if not 0 <= c < len(class_names))
    if unknown:
        raise ValueError(f"present classes {unknown} are outside [0, {len(class_names)}).")
    font = ImageFont.load_default(size=font_size)
    row, pad = font_size + 8, 6
    widths = [font.getbbox(name)[2] for name in class_names] or [0]
    canvas = Image.new("RGB", (pad * 3 + row + max(widths), pad * 2 + row * len(class_names)),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    colours = palette(len(class_names))
    for c, name in enumerate(class_names):
        y = pad + c * row
        shown = c in present
        swatch = tuple(int(v) for v in colours[c]) if shown else (225, 225, 225)
        draw.rectangle((pad, y + 2, pad + row - 4, y + row - 4), fill=swatch, outline=(0, 0, 0))
        draw.text((pad * 2 + row, y + 2), name, font=font,
                  fill=(0, 0, 0) if shown else (160, 160, 160))
    return np.asarray(canvas)


def save_png(path: str | os.PathLike, array: np.ndarray) -> epath.Path:
    """Writes a uint8 [H, W, 3] (or [H, W]) array as PNG (local or gs://); the file appears
    whole or not at all."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"{path}: expected a uint8 [H, W(, 3)] array, got "
                         f"{array.dtype} {array.shape}.")
    encoded = io.BytesIO()
    Image.fromarray(array).save(encoded, format="PNG")
    return paths.write_atomically(path, encoded.getvalue())
