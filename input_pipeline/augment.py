"""Training image preprocessing of the released recipe, as tf.data map functions.

The release used timm's `create_transform(is_training=True)` on PIL images:

    RandomResizedCrop(224, bilinear) -> flip(p=0.5) -> RandAugment -> ToTensor -> Normalize
    -> RandomErasing(p=0.25, 'pixel')

with RandAugment "rand-m9-mstd0.5-inc1" (configs/default.yml of NVlabs/GroupViT: the
increasing-severity op variants) and bilinear resampling. Here every random choice is a
stateless draw from the example's seed, so the same seed gives the same image and a
resumed pipeline continues exactly. JPEGs are decoded only inside the crop window
(pixel-identical to a full decode). The steps match PIL's arithmetic: the resize within
one grey level, RandAugment's colour ops exactly, its geometric ops within one level on
a few pixels (see tests/test_augment.py).

    image = train_image(record["image"], seed)              # the recipe
    image = train_image(record["image"], seed, **config)    # switches from a ConfigDict
"""
from __future__ import annotations

import math

import ml_collections
import tensorflow as tf

from input_pipeline import randaugment as randaugment_lib

MEAN_RGB = (0.485, 0.456, 0.406)  # ImageNet, on [0, 1] pixels
STD_RGB = (0.229, 0.224, 0.225)
# timm fills RandAugment's empty corners with the mean colour on the 0-255 scale.
FILL_RGB = tuple(min(255, round(255 * m)) for m in MEAN_RGB)
RECIPE_RANDAUGMENT = "rand-m9-mstd0.5-inc1"  # NVlabs/GroupViT configs/default.yml


def default_config() -> ml_collections.ConfigDict:
    """The released recipe's switches, to pass as `train_image(bytes, seed, **config)`."""
    return ml_collections.ConfigDict(dict(
        image_size=224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip=True,
        randaugment=RECIPE_RANDAUGMENT, random_erasing=0.25, antialias=True))


def normalize(image: tf.Tensor) -> tf.Tensor:
    """uint8 or float pixels in [0, 255] -> float32 normalised with the ImageNet statistics."""
    image = tf.cast(image, tf.float32)
    if image.shape.is_fully_defined():  # full-size constants: no slow channel broadcast
        mean = randaugment_lib.per_channel([255 * m for m in MEAN_RGB], image.shape)
        scale = randaugment_lib.per_channel([1 / (255 * s) for s in STD_RGB], image.shape)
    else:
        mean = tf.constant([255 * m for m in MEAN_RGB])
        scale = tf.constant([1 / (255 * s) for s in STD_RGB])
    return (image - mean) * scale


def _log_uniform(u: tf.Tensor, low: float, high: float) -> tf.Tensor:
    return tf.exp(math.log(low) + (math.log(high) - math.log(low)) * u)


def sample_crop_window(height, width, seed: tf.Tensor, scale=(0.08, 1.0),
                       ratio=(3 / 4, 4 / 3), attempts: int = 10):
    """The (y, x, h, w) window of torchvision's RandomResizedCrop, from stateless draws.

    All attempts are drawn at once; the first whose box fits wins, as in the sequential loop.
    No fit: a centre crop of the whole image with its aspect ratio clamped to `ratio`.
    """
    if not (0 < scale[0] <= scale[1] and 0 < ratio[0] <= ratio[1]):
        raise ValueError(f"crop scale {scale} and ratio {ratio} must be positive, low <= high")
    height = tf.cast(height, tf.float64)
    width = tf.cast(width, tf.float64)
    u = tf.random.stateless_uniform([3, attempts], seed, dtype=tf.float64)
    target_area = height * width * (scale[0] + (scale[1] - scale[0]) * u[0])
    aspect = _log_uniform(u[1], *ratio)  # width / height
    w = tf.round(tf.sqrt(target_area * aspect))
    h = tf.round(tf.sqrt(target_area / aspect))
    fits = (w >= 1) & (h >= 1) & (w <= width) & (h <= height)
    first = tf.argmax(tf.cast(fits, tf.int32))

    in_ratio = width / height
    narrow, wide = in_ratio < ratio[0], in_ratio > ratio[1]
    fallback_w = tf.where(wide, tf.round(height * ratio[1]), width)
    fallback_h = tf.where(narrow, tf.round(width / ratio[0]), height)

    found = tf.reduce_any(fits)
    h = tf.where(found, h[first], fallback_h)
    w = tf.where(found, w[first], fallback_w)
    # randint(0, H - h) inclusive when found; floor((H - h) / 2) otherwise.
    y = tf.where(found, tf.floor(u[2, 0] * (height - h + 1)), tf.floor((height - h) / 2))
    x = tf.where(found, tf.floor(u[2, 1] * (width - w + 1)), tf.floor((width - w) / 2))
    return tuple(tf.cast(v, tf.int32) for v in (y, x, h, w))


def decode_random_crop(image_bytes: tf.Tensor, seed: tf.Tensor, scale=(0.08, 1.0),
                       ratio=(3 / 4, 4 / 3)) -> tf.Tensor:
    """The RandomResizedCrop window of an encoded image as uint8 RGB [h, w, 3].

    JPEG: only the window is decoded. Other formats (PNG, GIF, BMP): full decode, then
    slice. Grayscale and RGBA become RGB (alpha dropped, like PIL's convert("RGB")).
    """
    def jpeg():
        shape = tf.image.extract_jpeg_shape(image_bytes)
        y, x, h, w = sample_crop_window(shape[0], shape[1], seed, scale, ratio)
        # libjpeg upsamples chroma as if the window's side columns were the image edge;
        # one spare column each side makes the window equal to full decode + slice.
        left = tf.maximum(x - 1, 0)
        right = tf.minimum(x + w + 1, tf.cast(shape[1], tf.int32))
        window = tf.stack([y, left, h, right - left])
        image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
        return image[:, x - left:x - left + w]

    def other():
        image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
        shape = tf.shape(image)
        y, x, h, w = sample_crop_window(shape[0], shape[1], seed, scale, ratio)
        return image[y:y + h, x:x + w]

    return tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)


def resize_uint8(image: tf.Tensor, size, antialias: bool = True) -> tf.Tensor:
    """Bilinear resize that antialiases when shrinking, like PIL's Image.resize(BILINEAR),
    rounded back to uint8 because the recipe's later steps see a PIL uint8 image. PIL
    rounds after each separable pass, TensorFlow once: values differ by at most 1.
    antialias=False: plain bilinear (about 3x cheaper; aliased when shrinking, unlike PIL)."""
    resized = tf.image.resize(image, size, method="bilinear", antialias=antialias)
    return tf.saturate_cast(resized + 0.5, tf.uint8)  # weights >= 0: +0.5, truncate = round


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Left-right flip with probability 0.5."""
    flip = tf.random.stateless_uniform([], seed) < 0.5
    return tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)


def sample_erase_box(height: int, width: int, seed: tf.Tensor, area=(0.02, 1 / 3),
                     ratio=(0.3, 1 / 0.3), attempts: int = 10):
    """timm RandomErasing's box (y, x, h, w) and whether an attempt fitted (bool scalar).

    Here the ratio is height / width and a box must be strictly smaller than the image.
    """
    u = tf.random.stateless_uniform([3, attempts], seed, dtype=tf.float64)
    target_area = float(height * width) * (area[0] + (area[1] - area[0]) * u[0])
    aspect = _log_uniform(u[1], *ratio)
    h = tf.round(tf.sqrt(target_area * aspect))
    w = tf.round(tf.sqrt(target_area / aspect))
    fits = (h < height) & (w < width)
    first = tf.argmax(tf.cast(fits, tf.int32))
    h, w = h[first], w[first]
    y = tf.floor(u[2, 0] * (height - h + 1))
    x = tf.floor(u[2, 1] * (width - w + 1))
    return tuple(tf.cast(v, tf.int32) for v in (y, x, h, w)), tf.reduce_any(fits)


def random_erase(image: tf.Tensor, seed: tf.Tensor, probability: float = 0.25) -> tf.Tensor:
    """timm RandomErasing(mode='pixel', max_count=1) on a normalised float32 [H, W, C] image:
    with `probability`, one box (area 2%-1/3, ratio 0.3-3.3) is replaced by N(0, 1) noise."""
    height, width, channels = image.shape
    seeds = tf.random.experimental.stateless_split(seed, 3)
    (y, x, h, w), fits = sample_erase_box(height, width, seeds[0])
    erase = (tf.random.stateless_uniform([], seeds[1]) < probability) & fits

    def erased():
        box = tf.stack([h, w, channels])
        around = [[y, height - y - h], [x, width - x - w], [0, 0]]
        noise = tf.pad(tf.random.stateless_normal(box, seeds[2]), around)
        outside = tf.pad(tf.zeros(box), around, constant_values=1.0)
        return image * outside + noise

    return tf.cond(erase, erased, lambda: image)


# No Python control flow here depends on tensors: skipping AutoGraph's conversion makes
# tracing inside Dataset.map several seconds faster.
@tf.autograph.experimental.do_not_convert
def train_image(image_bytes: tf.Tensor, seed: tf.Tensor, *, image_size: int = 224,
                scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: bool = True,
                randaugment: str | None = RECIPE_RANDAUGMENT,
                random_erasing: float = 0.25, antialias: bool = True) -> tf.Tensor:
    """Encoded image + this example's stateless seed (int [2]) -> float32
    [image_size, image_size, 3], normalised. Any step can be switched off: flip=False,
    randaugment=None (or ""), random_erasing=0. antialias=False trades the recipe's
    PIL-like shrinking for speed (the antialiased resize is most of the crop's cost)."""
    seed = tf.cast(seed, tf.int64)
    crop_seed, flip_seed, ra_seed, erase_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4))
    image = decode_random_crop(image_bytes, crop_seed, scale, ratio)
    image = resize_uint8(image, [image_size, image_size], antialias)
    if flip:
        image = random_flip(image, flip_seed)
    if randaugment:
        image = randaugment_lib.rand_augment(image, ra_seed, randaugment, fill=FILL_RGB)
    image = normalize(image)
    if random_erasing > 0:
        image = random_erase(image, erase_seed, random_erasing)
    return image


def center_crop_image(image_bytes: tf.Tensor, image_size: int = 224,
                      short_side: int | None = None) -> tf.Tensor:
    """Evaluation view: resize the short side to `short_side` (default `image_size`; the
    release's ImageNet evaluation used 256 for 224), centre crop, normalise.
    Sizes and offsets follow torchvision's Resize(int) and CenterCrop."""
    short_side = short_side or image_size
    if short_side < image_size:
        raise ValueError(f"short_side {short_side} is smaller than image_size {image_size}")
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    # torchvision truncates the long side: int(short_side * long / short).
    new_shape = tf.cast(tf.floor(short_side * shape / tf.reduce_min(shape)), tf.int32)
    image = resize_uint8(image, new_shape)
    # CenterCrop: int(round((H - size) / 2)), Python rounds half to even like tf.round.
    top, left = tf.unstack(tf.cast(
        tf.round(tf.cast(new_shape - image_size, tf.float64) / 2), tf.int32))
    image = image[top:top + image_size, left:left + image_size]
    return normalize(tf.ensure_shape(image, [image_size, image_size, 3]))
