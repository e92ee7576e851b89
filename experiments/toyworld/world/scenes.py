"""Procedural scenes for the toy world: textured objects with exact pixel masks.

Design (answering a first attempt in which captions named colours, which single patches
solve, and shapes never started to matter):
- A class is a TEXTURE (zebra stripes, leopard spots, a chessboard, ...) in its own
  typical colours, as real things have them (zebras are black and white), jittered per
  object. The captions never name colours, so the colour shortcut of the first attempt
  (colour words matched, the evaluated nouns ignored) is closed: the caption's nouns
  are the only text signal, and colour is just one more cue to the named class.
- A texture is recognisable from a few patches (periods of 4-8 pixels), so the words that
  name the segments are learnable within minutes; shapes are random (ellipses, boxes,
  triangles, blobs), so the mask boundary is a grouping problem, not a template.
- Objects are big (together ~40-70% of the image) and 1-3 per scene, with occlusion;
  the background is smooth (low-frequency colour noise) around one of four backdrop
  colours (sky, grass, wall, water) that captions usually name, label 0 for all four.
  Named backdrops give the background segment words of its own (measured in one-seed
  probes of 300 steps: groups labelled by an oracle reach 57 mIoU with them against 42
  without, for one grouping stage of 8 groups; 39 against 36 for two stages).
- A scene is a pure function of (seed, index): the world is unbounded and held-out sets
  are just other seeds.
"""
from __future__ import annotations

import dataclasses

import numpy as np

CLASSES = ("zebra", "leopard", "chessboard", "brick", "target", "net", "snake", "sand")
SHAPES = ("ellipse", "box", "triangle", "blob")
# Each class's two typical colours (RGB), in CLASSES order.
CLASS_COLOURS = np.array([
    [[245, 245, 245], [25, 25, 25]],     # zebra: white and black
    [[235, 165, 40], [70, 40, 15]],      # leopard: orange and dark brown
    [[230, 225, 200], [110, 60, 30]],    # chessboard: cream and wood
    [[180, 60, 40], [215, 210, 200]],    # brick: red with light mortar
    [[220, 30, 30], [250, 250, 250]],    # target: red and white
    [[40, 60, 140], [230, 230, 120]],    # net: navy with yellow cords
    [[60, 150, 50], [200, 190, 60]],     # snake: green and yellow
    [[225, 195, 130], [170, 130, 80]],   # sand: light and dark sand
], np.float32)
COLOUR_JITTER = 25.0
# Backdrops: smooth, nameable, not segmented (label 0); base colours (RGB).
BACKDROPS = ("sky", "grass", "wall", "water")
BACKDROP_COLOURS = np.array([[125, 170, 230], [95, 160, 75], [150, 150, 145], [45, 110, 150]],
                            np.float32)


@dataclasses.dataclass(frozen=True)
class SceneObject:
    name: str            # one of CLASSES
    area: float          # visible fraction of the image
    center: tuple[float, float]  # visible centroid (y, x) in [0, 1]


@dataclasses.dataclass(frozen=True)
class Scene:
    image: np.ndarray    # uint8 [S, S, 3]
    labels: np.ndarray   # uint8 [S, S]: 0 background, c + 1 for CLASSES[c]
    objects: tuple[SceneObject, ...]  # visible objects, in drawing order
    backdrop: str = ""   # one of BACKDROPS


def _texture(name: str, yy: np.ndarray, xx: np.ndarray, center, rng) -> np.ndarray:
    """Boolean [S, S] pattern (True = the object's second colour) of a texture class."""
    period = rng.uniform(5.0, 8.0)
    phase_y, phase_x = rng.uniform(0, period, 2)
    y, x = yy + phase_y, xx + phase_x
    if name == "zebra":       # straight stripes at a random angle
        a = rng.uniform(0, np.pi)
        return np.mod(y * np.sin(a) + x * np.cos(a), period) < period / 2
    if name == "leopard":     # round spots on a jittered lattice
        cy, cx = np.mod(y, period) - period / 2, np.mod(x, period) - period / 2
        return cy ** 2 + cx ** 2 < (period * 0.3) ** 2
    if name == "chessboard":  # square cells
        cell = period * 0.6
        return (np.floor(y / cell) + np.floor(x / cell)) % 2 == 0
    if name == "brick":       # rows of bricks, every other row shifted, thin mortar lines
        row = np.floor(y / (period * 0.7))
        shifted = x + (row % 2) * period
        return (np.mod(y, period * 0.7) < 1.2) | (np.mod(shifted, 2 * period) < 1.2)
    if name == "target":      # concentric rings around the object's centre
        r = np.hypot(yy - center[0], xx - center[1])
        return np.mod(r, period) < period / 2
    if name == "net":         # thin grid lines
        return (np.mod(y, period) < 1.3) | (np.mod(x, period) < 1.3)
    if name == "snake":       # zigzag bands
        tooth = np.abs(np.mod(x, period * 1.2) - period * 0.6)
        return np.mod(y + tooth * 1.5, period) < period / 2
    if name == "sand":        # fine random speckle
        return rng.random(yy.shape) < 0.35
    raise ValueError(f"unknown texture class {name!r}")


def _shape_mask(shape: str, yy, xx, size: int, rng) -> tuple[np.ndarray, tuple[float, float]]:
    """A random filled shape covering roughly 15-45% of the image, and its centre."""
    radius = size * np.sqrt(rng.uniform(0.05, 0.15))
    cy, cx = rng.uniform(radius * 0.6, size - radius * 0.6, 2)
    dy, dx = yy - cy, xx - cx
    if shape == "ellipse":
        a = rng.uniform(0, np.pi)
        ry, rx = radius * rng.uniform(0.7, 1.4, 2)
        u, v = dy * np.cos(a) + dx * np.sin(a), -dy * np.sin(a) + dx * np.cos(a)
        mask = (u / ry) ** 2 + (v / rx) ** 2 < 1
    elif shape == "box":
        hy, hx = radius * rng.uniform(0.6, 1.2, 2)
        mask = (np.abs(dy) < hy) & (np.abs(dx) < hx)
    elif shape == "triangle":
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3
        pts = np.stack([cy + 1.5 * radius * np.sin(angles), cx + 1.5 * radius * np.cos(angles)], 1)
        mask = np.ones_like(yy, bool)
        for i in range(3):
            (y0, x0), (y1, x1) = pts[i], pts[(i + 1) % 3]
            mask &= (x1 - x0) * (yy - y0) - (y1 - y0) * (xx - x0) <= 0
    elif shape == "blob":     # a circle with a wobbly radius
        theta = np.arctan2(dy, dx)
        k = rng.integers(2, 5)
        wobble = 1 + 0.3 * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
        mask = np.hypot(dy, dx) < radius * wobble
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return mask, (cy, cx)


def _background(size: int, rng, base) -> np.ndarray:
    """Smooth colour noise around `base`: bilinear upsampling of a 3x3 grid of colours."""
    grid = (np.asarray(base, np.float32) + rng.uniform(-35, 35, (3, 3, 3))).astype(np.float32)
    t = np.linspace(0, 2, size)
    i0 = np.minimum(t.astype(int), 1)
    f = (t - i0)[:, None]
    rows = grid[i0] * (1 - f[..., None]) + grid[i0 + 1] * f[..., None]   # [S, 3, 3]
    img = rows[:, i0] * (1 - f[None, :, :]) + rows[:, i0 + 1] * f[None, :, :]
    return img + rng.normal(0, 4, img.shape)


def make_scene(seed: int, index: int, size: int = 64, max_objects: int = 3,
               classes: tuple[str, ...] = CLASSES, min_visible: float = 0.04) -> Scene:
    """Scene `index` of world `seed`: distinct classes, each visible on >= min_visible of it."""
    rng = np.random.default_rng([seed, index])
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    while True:
        count = int(rng.integers(1, max_objects + 1))
        names = [classes[i] for i in rng.choice(len(classes), count, replace=False)]
        backdrop = int(rng.integers(len(BACKDROPS)))
        image = _background(size, rng, BACKDROP_COLOURS[backdrop])
        labels = np.zeros((size, size), np.uint8)
        for name in names:
            mask, center = _shape_mask(str(rng.choice(SHAPES)), yy, xx, size, rng)
            first, second = (CLASS_COLOURS[CLASSES.index(name)][rng.permutation(2)]
                             + rng.normal(0, COLOUR_JITTER, (2, 3)))
            pattern = _texture(name, yy, xx, center, rng)
            colours = np.where(pattern[..., None], second, first) + rng.normal(0, 6, (size, size, 3))
            image = np.where(mask[..., None], colours, image)
            labels[mask] = classes.index(name) + 1
        objects = []
        for name in names:
            visible = labels == classes.index(name) + 1
            area = float(visible.mean())
            if area < min_visible:
                break
            ys, xs = np.nonzero(visible)
            objects.append(SceneObject(name, area, (ys.mean() / size, xs.mean() / size)))
        else:
            image = np.clip(image, 0, 255).astype(np.uint8)
            return Scene(image, labels, tuple(objects), BACKDROPS[backdrop])
