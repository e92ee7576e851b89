"""Training image preprocessing of the released recipe, as tf.data map functions.

The release used timm's `create_transform(is_training=True)` on PIL images:

    RandomResizedCrop(224, bilinear) -> flip(p=0.5) -> RandAugment -> ToTensor -> Normalize
    -> RandomErasing(p=0.25, 'pixel')

with RandAugment "rand-m9-mstd0.5-inc1" (configs/default.yml of NVlabs/GroupViT: the
increasing-severity op variants) and bilinear resampling. Here every random choice is a
stateless draw from the example's seed, so the same seed gives the same image and a
resumed pipeline continues exactly. JPEGs are decoded only inside the crop window
(pixel-identical to a full decode; `jpeg_draft=True` decodes large windows at reduced
scale, faster but further from PIL). The steps match PIL's arithmetic: the resize within
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
        randaugment=RECIPE_RANDAUGMENT, random_erasing=0.25, antialias=True,
        jpeg_draft=False))


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


def _decode_jpeg_window(image_bytes: tf.Tensor, window, image_width,
                        draft: int = 1) -> tf.Tensor:
    """Rows y:y+h, columns x:x+w of the JPEG decoded at 1/draft size (libjpeg's DCT-domain
    scaling; the window and image_width in that scaled image), uint8 RGB. Pixel-identical
    to decoding the whole image at that scale, then slicing."""
    y, x, h, w = window
    # libjpeg upsamples chroma as if the window's side columns were the image edge;
    # one spare column each side makes the window equal to full decode + slice.
    left = tf.maximum(x - 1, 0)
    right = tf.minimum(x + w + 1, image_width)
    image = tf.image.decode_and_crop_jpeg(image_bytes, tf.stack([y, left, h, right - left]),
                                          channels=3, ratio=draft)
    return image[:, x - left:x - left + w]


def _decode_other_window(image_bytes: tf.Tensor, seed: tf.Tensor, scale, ratio) -> tf.Tensor:
    """PNG, GIF, BMP: full decode, then the RandomResizedCrop window."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    shape = tf.shape(image)
    y, x, h, w = sample_crop_window(shape[0], shape[1], seed, scale, ratio)
    return image[y:y + h, x:x + w]


def decode_random_crop(image_bytes: tf.Tensor, seed: tf.Tensor, scale=(0.08, 1.0),
                       ratio=(3 / 4, 4 / 3)) -> tf.Tensor:
    """The RandomResizedCrop window of an encoded image as uint8 RGB [h, w, 3].

    JPEG: only the window is decoded. Other formats (PNG, GIF, BMP): full decode, then
    slice. Grayscale and RGBA become RGB (alpha dropped, like PIL's convert("RGB")).
    """
    def jpeg():
        shape = tf.image.extract_jpeg_shape(image_bytes)
        window = sample_crop_window(shape[0], shape[1], seed, scale, ratio)
        return _decode_jpeg_window(image_bytes, window, shape[1])

    return tf.cond(tf.io.is_jpeg(image_bytes), jpeg,
                   lambda: _decode_other_window(image_bytes, seed, scale, ratio))


def _resize_rows(rows: tf.Tensor, size, scale, translation, antialias: bool) -> tf.Tensor:
    """[n, C] -> float32 [size, C]: TensorFlow's ScaleAndTranslate (triangle kernel) along
    the first axis only. The kernel loops over channels innermost, so folding the other
    axes into the channels makes it about twice as fast as on an [h, w, 3] image."""
    resized = tf.raw_ops.ScaleAndTranslate(
        images=rows[None, :, None, :], size=tf.stack([size, 1]),
        scale=tf.stack([scale, 1.0]), translation=tf.stack([translation, 0.0]),
        kernel_type="triangle", antialias=antialias)
    return resized[0, :, 0, :]


def _scale_and_translate_uint8(image: tf.Tensor, size, scale: tf.Tensor,
                               translation: tf.Tensor, antialias: bool) -> tf.Tensor:
    """[h, w, C] -> uint8 [size[0], size[1], C]: tf.raw_ops.ScaleAndTranslate (triangle
    kernel; scale and translation float32 [2]) with the same arithmetic (rows, then
    columns), rounded."""
    height, width = size[0], size[1]
    w, channels = tf.shape(image)[1], tf.shape(image)[2]
    rows = _resize_rows(tf.reshape(image, [tf.shape(image)[0], -1]), height, scale[0],
                        translation[0], antialias)
    columns = tf.transpose(tf.reshape(rows, [height, w, channels]), [1, 0, 2])
    resized = _resize_rows(tf.reshape(columns, [w, -1]), width, scale[1], translation[1],
                           antialias)
    # Rounded before the last transpose, which then moves a quarter of the bytes.
    return tf.transpose(tf.reshape(_round_uint8(resized), [width, height, channels]), [1, 0, 2])


def resize_uint8(image: tf.Tensor, size, antialias: bool = True) -> tf.Tensor:
    """Bilinear resize that antialiases when shrinking, like PIL's Image.resize(BILINEAR),
    rounded back to uint8 because the recipe's later steps see a PIL uint8 image. PIL
    rounds after each separable pass, TensorFlow once: values differ by at most 1.
    Equal to tf.image.resize(antialias=True), rounded.
    antialias=False: plain bilinear (cheaper; aliased when shrinking, unlike PIL)."""
    if not antialias:
        return _round_uint8(tf.image.resize(image, size, method="bilinear"))
    scale = tf.cast(size, tf.float32) / tf.cast(tf.shape(image)[:2], tf.float32)
    return _scale_and_translate_uint8(image, size, scale, tf.zeros([2]), antialias)


def _round_uint8(image: tf.Tensor) -> tf.Tensor:
    return tf.saturate_cast(image + 0.5, tf.uint8)  # weights >= 0: +0.5, truncate = round


JPEG_DRAFTS = (2, 4, 8)  # libjpeg's power-of-two DCT-domain downscales


def _draft_resize(image_bytes: tf.Tensor, shape: tf.Tensor, window, draft: int, size,
                  antialias: bool) -> tf.Tensor:
    """The window resized to `size` from the JPEG decoded at 1/draft scale.

    The window's edges fall between the scaled pixels: the decoded block is the scaled
    pixels the window touches, and the resize maps the exact (fractional) window onto the
    output, so only the scaled pixels' own averaging differs from the full-size path.
    """
    y, x, h, w = (tf.cast(v, tf.float64) / draft for v in window)
    top, left = tf.floor(y), tf.floor(x)
    bottom, right = tf.math.ceil(y + h), tf.math.ceil(x + w)
    block = tuple(tf.cast(v, tf.int32) for v in (top, left, bottom - top, right - left))
    scaled_width = (shape[1] + draft - 1) // draft  # libjpeg rounds the scaled size up
    image = _decode_jpeg_window(image_bytes, block, scaled_width, draft)
    scale = tf.cast(size, tf.float64) / tf.stack([h, w])
    translation = -tf.stack([y - top, x - left]) * scale
    return _scale_and_translate_uint8(image, size, tf.cast(scale, tf.float32),
                                      tf.cast(translation, tf.float32), antialias)


def resized_random_crop(image_bytes: tf.Tensor, seed: tf.Tensor, size, scale=(0.08, 1.0),
                        ratio=(3 / 4, 4 / 3), antialias: bool = True,
                        jpeg_draft: bool = False) -> tf.Tensor:
    """RandomResizedCrop: the window of `decode_random_crop` resized to `size` (height,
    width) with `resize_uint8`, uint8 [height, width, 3].

    jpeg_draft=True: a JPEG window at least 2x (4x, 8x) the output on both sides is decoded
    at 1/2 (1/4, 1/8) scale in the DCT domain, as PIL's draft mode does, and resized from
    there (still shrinking); other windows and formats take the full-size path, exactly.
    Off in the recipe: the reduced inverse DCT keeps each 8x8 block's low frequencies
    sharply instead of averaging, which moves 224-pixel crops of photos by about 1.8 grey
    levels on average and up to ~40 at edges (PSNR ~40 dB), several times what decoding
    with TensorFlow instead of PIL already moves them (experiments/benchmarks/README.md).
    """
    height, width = size

    def jpeg():
        shape = tf.image.extract_jpeg_shape(image_bytes)
        window = sample_crop_window(shape[0], shape[1], seed, scale, ratio)

        def full_size():
            return resize_uint8(_decode_jpeg_window(image_bytes, window, shape[1]), size,
                                antialias)

        if not jpeg_draft:
            return full_size()
        drafts = [lambda d=d: _draft_resize(image_bytes, shape, window, d, size, antialias)
                  for d in JPEG_DRAFTS]
        h, w = window[2:]
        # Drafts are powers of two: the count that fit picks the largest.
        fitting = tf.add_n([tf.cast((h >= d * height) & (w >= d * width), tf.int32)
                            for d in JPEG_DRAFTS])
        return tf.switch_case(fitting, [full_size] + drafts)

    def other():
        return resize_uint8(_decode_other_window(image_bytes, seed, scale, ratio), size,
                            antialias)

    image = tf.cond(tf.io.is_jpeg(image_bytes), jpeg, other)
    return tf.ensure_shape(image, [height, width, 3])


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
                random_erasing: float = 0.25, antialias: bool = True,
                jpeg_draft: bool = False) -> tf.Tensor:
    """Encoded image + this example's stateless seed (int [2]) -> float32
    [image_size, image_size, 3], normalised. Any step can be switched off: flip=False,
    randaugment=None (or ""), random_erasing=0. antialias=False trades the recipe's
    PIL-like shrinking for speed (the antialiased resize is half of the crop's cost);
    jpeg_draft=True decodes large windows at reduced scale (see resized_random_crop)."""
    seed = tf.cast(seed, tf.int64)
    crop_seed, flip_seed, ra_seed, erase_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, 4))
    image = resized_random_crop(image_bytes, crop_seed, (image_size, image_size), scale, ratio,
                                antialias, jpeg_draft)
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
