"""timm's RandAugment on uint8 RGB images in TensorFlow, driven by stateless seeds.

Semantics follow timm.data.auto_augment (the release used timm 0.4.12): each of
`num_layers` ops is drawn uniformly with replacement from 15 ops and applied with
probability 0.5; its magnitude is N(m, mstd) clipped to [0, mmax]; geometric ops and the
"increasing" enhancements take a random sign. The pixel arithmetic reproduces PIL's
(ImageOps, ImageEnhance, Image.transform with bilinear resampling and a fill colour),
so each op can be checked against PIL.

Spec strings as timm: "rand-m9-mstd0.5-inc1" = magnitude 9, std 0.5, increasing-severity
variants of Posterize, Solarize, Color, Contrast, Brightness and Sharpness.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re

import numpy as np
import tensorflow as tf

_LEVEL_DENOM = 10.0  # timm maps magnitudes on a 0-10 scale
_TRANSLATE_FRACTION = 0.45  # TranslateXRel / TranslateYRel: up to 45% of the side
_APPLY_PROBABILITY = 0.5


@dataclasses.dataclass(frozen=True)
class RandAugmentSpec:
    num_layers: int = 2
    magnitude: float = 10.0
    magnitude_std: float = 0.0  # inf: magnitude ~ U(0, magnitude)
    magnitude_max: float = _LEVEL_DENOM
    increasing: bool = False


def parse_spec(spec: str) -> RandAugmentSpec:
    """timm's RandAugment string ("rand-m9-n2-mstd0.5-mmax10-inc1") -> RandAugmentSpec."""
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ValueError(f"RandAugment spec {spec!r} must start with 'rand'")
    fields = {}
    for part in parts[1:]:
        match = re.fullmatch(r"([a-z]+)(\d.*)", part)
        if not match or match[1] not in ("m", "n", "mstd", "mmax", "inc"):
            raise ValueError(f"RandAugment spec {spec!r}: unknown section {part!r} "
                             "(known: m, n, mstd, mmax, inc)")
        fields[match[1]] = float(match[2])
    std = fields.get("mstd", 0.0)
    return RandAugmentSpec(
        num_layers=int(fields.get("n", 2)),
        magnitude=fields.get("m", _LEVEL_DENOM),
        magnitude_std=math.inf if std > 100 else std,  # timm: > 100 means uniform
        magnitude_max=fields.get("mmax", _LEVEL_DENOM),
        increasing=bool(fields.get("inc", 0)))


# TensorFlow's CPU kernels broadcast a [3] vector over [H, W, 3] about ten times slower
# than they combine two full tensors, so per-channel values and pixel grids are expanded
# to the image's static shape once, at trace time.

@functools.lru_cache(maxsize=32)
def _expanded(values: tuple, shape: tuple, dtype: str) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(values, dtype), shape))


def per_channel(values, shape, dtype=np.float32) -> tf.Tensor:
    """A constant of the static `shape` [..., C] holding values[c] in channel c."""
    return tf.constant(_expanded(tuple(values), tuple(shape), np.dtype(dtype).name))


@functools.lru_cache(maxsize=8)
def _pixel_centres(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """PIL's pixel-centre coordinates x + 0.5 and y + 0.5, float32 [H, W, 3]."""
    ys, xs = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return tuple(np.ascontiguousarray(np.repeat(g[..., None], 3, -1), np.float32)
                 for g in (xs, ys))


# ---- Colour ops (uint8 [H, W, 3] -> uint8) -------------------------------------------

def _channel_index(image: tf.Tensor) -> tf.Tensor:
    """Pixel value + 256 * channel, an index into per-channel tables of 256."""
    return tf.cast(image, tf.int32) + per_channel([0, 256, 512], image.shape, np.int32)


def _apply_lut(image: tf.Tensor, lut: tf.Tensor) -> tf.Tensor:
    """Per-channel lookup: lut int32 [3, 256]."""
    return tf.cast(tf.gather(tf.reshape(lut, [-1]), _channel_index(image)), tf.uint8)


def _histograms(image: tf.Tensor) -> tf.Tensor:
    """int32 [3, 256] per-channel histograms."""
    index = tf.reshape(_channel_index(image), [-1])
    return tf.reshape(tf.math.bincount(index, minlength=768, maxlength=768), [3, 256])


def invert(image: tf.Tensor) -> tf.Tensor:
    return 255 - image


def posterize(image: tf.Tensor, bits) -> tf.Tensor:
    """Keep the top `bits` bits (PIL ImageOps.posterize; 8 or more: unchanged; 0: black,
    as the release's Pillow did; the pinned Pillow refuses 0)."""
    drop = 8 - tf.clip_by_value(tf.cast(bits, tf.int32), 0, 8)
    mask = tf.cast(tf.bitwise.left_shift(255, drop) & 255, tf.uint8)
    return tf.bitwise.bitwise_and(image, mask)


def solarize(image: tf.Tensor, threshold) -> tf.Tensor:
    """Invert the pixels >= threshold (PIL ImageOps.solarize; 256: unchanged)."""
    threshold = tf.cast(threshold, tf.int32)
    invert_them = (image >= tf.cast(tf.minimum(threshold, 255), tf.uint8)) & (threshold < 256)
    # x XOR 255 = 255 - x; arithmetic because tf.where is several times slower.
    return tf.bitwise.bitwise_xor(image, tf.cast(invert_them, tf.uint8) * 255)


def solarize_add(image: tf.Tensor, addition, threshold=128) -> tf.Tensor:
    """Add `addition` (saturating) to the pixels < threshold (timm's solarize_add)."""
    addition = tf.cast(tf.clip_by_value(tf.cast(addition, tf.int32), 0, 255), tf.uint8)
    below = tf.cast(image < threshold, tf.uint8)
    # min(x + a, 255) = min(x, 255 - a) + a; added only where below the threshold.
    return tf.minimum(image, 255 - addition * below) + addition * below


def auto_contrast(image: tf.Tensor) -> tf.Tensor:
    """Stretch each channel's [min, max] to [0, 255] (PIL ImageOps.autocontrast, cutoff 0),
    in float64 and truncated, as PIL builds its table."""
    flat = tf.reshape(image, [-1, 3])
    low = tf.cast(tf.reduce_min(flat, axis=0), tf.float64)[:, None]
    high = tf.cast(tf.reduce_max(flat, axis=0), tf.float64)[:, None]
    scale = 255.0 / tf.maximum(high - low, 1.0)
    values = tf.range(256, dtype=tf.float64)[None, :]
    stretched = tf.clip_by_value(tf.floor(values * scale - low * scale), 0, 255)
    lut = tf.where(high > low, stretched, values)
    return _apply_lut(image, tf.cast(lut, tf.int32))


def equalize(image: tf.Tensor) -> tf.Tensor:
    """Histogram equalisation per channel with PIL's integer table (ImageOps.equalize of
    Pillow >= 9.2, which divides by 255; older Pillow divided by 256)."""
    histogram = _histograms(image)
    total = tf.reduce_sum(histogram, axis=1, keepdims=True)
    # The count in the last occupied bin is left out of the step.
    last = tf.reduce_max(tf.where(histogram > 0, tf.range(256), -1), axis=1, keepdims=True)
    last_count = tf.gather(histogram, last, batch_dims=1)
    step = (total - last_count) // 255
    before = tf.cumsum(histogram, axis=1, exclusive=True)
    lut = tf.minimum((step // 2 + before) // tf.maximum(step, 1), 255)
    return _apply_lut(image, tf.where(step > 0, lut, tf.range(256)[None, :]))


def grayscale(image: tf.Tensor) -> tf.Tensor:
    """PIL's convert("L") in its fixed point (ITU-R 601-2 luma), repeated in the three
    channels: uint8 [H, W, 3]. The float32 matmul is exact: every sum stays below 2^24."""
    weights = tf.constant([[19595.0] * 3, [38470.0] * 3, [7471.0] * 3])
    pixels = tf.reshape(tf.cast(image, tf.float32), [-1, 3])
    luma = tf.cast(tf.matmul(pixels, weights), tf.int32)
    luma = tf.bitwise.right_shift(luma + 0x8000, 16)
    return tf.reshape(tf.cast(luma, tf.uint8), tf.shape(image))


def blend(degenerate: tf.Tensor, image: tf.Tensor, factor) -> tf.Tensor:
    """PIL Image.blend(degenerate, image, factor): float32, clipped, truncated."""
    degenerate = tf.cast(degenerate, tf.float32)
    mixed = degenerate + tf.cast(factor, tf.float32) * (tf.cast(image, tf.float32) - degenerate)
    return tf.cast(tf.clip_by_value(mixed, 0.0, 255.0), tf.uint8)


def color(image: tf.Tensor, factor) -> tf.Tensor:
    """Saturation (ImageEnhance.Color): 0 gives the grey image, 1 the image."""
    return blend(grayscale(image), image, factor)


def contrast(image: tf.Tensor, factor) -> tf.Tensor:
    """ImageEnhance.Contrast: blend with the mean grey level (rounded half up)."""
    mean = tf.reduce_mean(tf.cast(grayscale(image), tf.float64))
    return blend(tf.floor(mean + 0.5), image, factor)


def brightness(image: tf.Tensor, factor) -> tf.Tensor:
    """ImageEnhance.Brightness: blend with black."""
    return blend(0.0, image, factor)


def sharpness(image: tf.Tensor, factor) -> tf.Tensor:
    """ImageEnhance.Sharpness: blend with PIL's SMOOTH filter (3x3, centre 5, sum 13),
    whose one-pixel border is the image itself."""
    kernel = tf.constant([[1., 1., 1.], [1., 5., 1.], [1., 1., 1.]]) / 13.0
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])
    smooth = tf.nn.depthwise_conv2d(tf.cast(image, tf.float32)[None], kernel,
                                    strides=[1, 1, 1, 1], padding="VALID")[0]
    smooth = tf.cast(tf.clip_by_value(tf.floor(smooth + 0.5), 0, 255), tf.uint8)
    # PIL keeps the outermost pixels: paste the smoothed interior into the image.
    border = tf.pad(tf.zeros_like(smooth), [[1, 1], [1, 1], [0, 0]], constant_values=1)
    smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]) + image * border
    return blend(smooth, image, factor)


# ---- Geometric ops --------------------------------------------------------------------

def affine(image: tf.Tensor, matrix, fill) -> tf.Tensor:
    """PIL Image.transform(AFFINE, matrix, BILINEAR, fillcolor=fill).

    PIL maps each output pixel centre (u, v) = (x + .5, y + .5) to the input point
    (a u + b v + c, d u + e v + f), takes the pixel as `fill` when that point lies outside
    [0, W) x [0, H), otherwise interpolates with edge clamping, and truncates.
    """
    a, b, c, d, e, f = (tf.cast(v, tf.float32) for v in matrix)
    height, width = image.shape[0], image.shape[1]
    # TensorFlow samples pixel i at coordinate i, PIL at i + 0.5.
    offset_x = c + 0.5 * (a + b) - 0.5
    offset_y = f + 0.5 * (d + e) - 0.5
    transform = tf.stack([a, b, offset_x, d, e, offset_y, 0.0, 0.0])[None]
    warped = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(image, tf.float32)[None], transforms=transform,
        output_shape=[height, width], fill_value=0.0, interpolation="BILINEAR",
        fill_mode="NEAREST")[0]
    xs, ys = _pixel_centres(height, width)
    source_x = a * xs + b * ys + c
    source_y = d * xs + e * ys + f
    inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
    inside = tf.cast(inside, tf.float32)
    fill = per_channel(fill, image.shape)
    return tf.cast(tf.clip_by_value(tf.floor(warped), 0, 255) * inside + fill * (1 - inside),
                   tf.uint8)


def rotate(image: tf.Tensor, degrees, fill) -> tf.Tensor:
    """Counter-clockwise about the image centre, same size (PIL Image.rotate)."""
    angle = -tf.cast(degrees, tf.float64) * (math.pi / 180)
    cos, sin = tf.cos(angle), tf.sin(angle)
    center_x, center_y = image.shape[1] / 2, image.shape[0] / 2
    c = cos * -center_x + sin * -center_y + center_x
    f = -sin * -center_x + cos * -center_y + center_y
    return affine(image, (cos, sin, c, -sin, cos, f), fill)


def shear_x(image: tf.Tensor, factor, fill) -> tf.Tensor:
    return affine(image, (1.0, factor, 0.0, 0.0, 1.0, 0.0), fill)


def shear_y(image: tf.Tensor, factor, fill) -> tf.Tensor:
    return affine(image, (1.0, 0.0, 0.0, factor, 1.0, 0.0), fill)


def translate_x(image: tf.Tensor, pixels, fill) -> tf.Tensor:
    """Content moves left by `pixels` (PIL's sign convention)."""
    return affine(image, (1.0, 0.0, pixels, 0.0, 1.0, 0.0), fill)


def translate_y(image: tf.Tensor, pixels, fill) -> tf.Tensor:
    return affine(image, (1.0, 0.0, 0.0, 0.0, 1.0, pixels), fill)


# ---- The op table: timm's _RAND_TRANSFORMS order, magnitude -> argument ---------------

def _enhance_factor(level, sign, increasing: bool):
    if increasing:  # 1 -+ 0.9 level: both directions, stronger with the magnitude
        return tf.maximum(0.1, 1.0 + sign * level / _LEVEL_DENOM * 0.9)
    return level / _LEVEL_DENOM * 1.8 + 0.1


def _posterize_bits(level, increasing: bool):
    bits = tf.floor(level / _LEVEL_DENOM * 4)
    return 4 - bits if increasing else bits


def _solarize_threshold(level, increasing: bool):
    threshold = tf.floor(level / _LEVEL_DENOM * 256)
    return 256 - threshold if increasing else threshold


def _ops(increasing: bool):
    """Branches (image, level, sign, fill) -> image; level in [0, mmax], sign +-1."""
    def enhance(op):
        return lambda im, lv, sg, fill: op(im, _enhance_factor(lv, sg, increasing))

    def translate(op, axis):
        return lambda im, lv, sg, fill: op(
            im, sg * lv / _LEVEL_DENOM * _TRANSLATE_FRACTION * im.shape[axis], fill)

    return (
        lambda im, lv, sg, fill: auto_contrast(im),
        lambda im, lv, sg, fill: equalize(im),
        lambda im, lv, sg, fill: invert(im),
        lambda im, lv, sg, fill: rotate(im, sg * lv / _LEVEL_DENOM * 30, fill),
        lambda im, lv, sg, fill: posterize(im, _posterize_bits(lv, increasing)),
        lambda im, lv, sg, fill: solarize(im, _solarize_threshold(lv, increasing)),
        lambda im, lv, sg, fill: solarize_add(im, tf.floor(lv / _LEVEL_DENOM * 110)),
        enhance(color),
        enhance(contrast),
        enhance(brightness),
        enhance(sharpness),
        lambda im, lv, sg, fill: shear_x(im, sg * lv / _LEVEL_DENOM * 0.3, fill),
        lambda im, lv, sg, fill: shear_y(im, sg * lv / _LEVEL_DENOM * 0.3, fill),
        translate(translate_x, 1),
        translate(translate_y, 0),
    )


OP_NAMES = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
            "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
            "TranslateXRel", "TranslateYRel")


def sample_layers(seed: tf.Tensor, spec: RandAugmentSpec):
    """Per layer: op index (len(OP_NAMES) = skipped), magnitude level, sign (+-1)."""
    n = spec.num_layers
    seeds = tf.random.experimental.stateless_split(seed, 3)
    u = tf.random.stateless_uniform([3, n], seeds[0])
    op = tf.random.stateless_uniform([n], seeds[1], maxval=len(OP_NAMES), dtype=tf.int32)
    op = tf.where(u[0] < _APPLY_PROBABILITY, op, len(OP_NAMES))
    if spec.magnitude_std == math.inf:
        level = spec.magnitude * u[1]
    else:
        noise = tf.random.stateless_normal([n], seeds[2])
        level = spec.magnitude + spec.magnitude_std * noise
    level = tf.clip_by_value(level, 0.0, spec.magnitude_max)
    sign = tf.where(u[2] > 0.5, -1.0, 1.0)
    return op, level, sign


@tf.autograph.experimental.do_not_convert  # no tensor-dependent Python control flow
def rand_augment(image: tf.Tensor, seed: tf.Tensor, spec: str | RandAugmentSpec,
                 fill=(128, 128, 128)) -> tf.Tensor:
    """RandAugment on a uint8 [H, W, 3] image with a static shape; `fill` is the RGB colour
    of pixels that geometric ops move in from outside (timm passes the dataset mean)."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if not image.shape.is_fully_defined() or image.dtype != tf.uint8:
        raise ValueError(f"rand_augment needs a uint8 image of static shape, got {image}")
    branches = _ops(spec.increasing)
    ops, levels, signs = sample_layers(seed, spec)
    for i in range(spec.num_layers):
        level, sign = levels[i], signs[i]
        image = tf.switch_case(
            ops[i], [lambda op=op: op(image, level, sign, fill) for op in branches],
            default=lambda: image)
    return image
