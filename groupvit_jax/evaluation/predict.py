"""Zero-shot segmentation of whole images: resize, slide, score, average, resize back.

    labels = gv.evaluation.predict_segmentation(model, image_uint8, ["cat", "dog"])

The windows of a batch of images go through the tower together, sharded over all local
devices (a 1-D mesh); only group maps and small score tables come back to the host,
which averages them and resizes back (assemble.py).
"""
from __future__ import annotations

import functools
from collections import defaultdict
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from groupvit_jax.evaluation.classification import text_classifier
from groupvit_jax.evaluation.assemble import label_map
from groupvit_jax.evaluation.kmeans import kmeans_segments
from groupvit_jax.evaluation.resize import RELEASED, Scale, resize_for_protocol
from groupvit_jax.models.pixels import normalize_pixels
from groupvit_jax.evaluation.scoring import score_windows
from groupvit_jax.evaluation.slide import window_boxes
from groupvit_jax.multihost import host_local
from input_pipeline.templates import TEMPLATE_SETS

DEFAULT_TEMPLATE = "a photo of a {}."
WINDOWS_PER_DEVICE = 8  # the largest tower batch per device

def resolve_templates(template: str | Sequence[str]) -> tuple[str, ...]:
    """A template ("a photo of a {}."), a set name of input_pipeline.templates, or a list."""
    if isinstance(template, str):
        if "{}" in template:
            return (template,)
        if template in TEMPLATE_SETS:
            return TEMPLATE_SETS[template]
        raise ValueError(f"template {template!r} has no '{{}}' and is not a template set; "
                         f"sets: {sorted(TEMPLATE_SETS)}.")
    templates = tuple(template)
    bad = [t for t in templates if "{}" not in t]
    if not templates or bad:
        raise ValueError(f"templates need a '{{}}' for the class name; got {templates!r}.")
    return templates


def add_template_flag(flag_values) -> None:
    """The binaries' --template (absl): a template with {} or a template set's name."""
    def valid(template: str) -> bool:
        return "{}" in template or template in TEMPLATE_SETS
    flags.DEFINE_string("template", DEFAULT_TEMPLATE, "a prompt with {} for the class name, or a "
                        "template set of input_pipeline/templates.py", flag_values=flag_values)
    flags.register_validator("template", valid, f"needs a '{{}}' or a template set's name "
                             f"({', '.join(sorted(TEMPLATE_SETS))})", flag_values=flag_values)


@functools.partial(jax.jit, static_argnames=("module", "window_hw", "kmeans",
                                             "with_background"))
def _window_pass(windows, window_hw, variables, class_embeds, logit_scale, bg_thresh, *,
                 module, kmeans: int, with_background: bool):
    """uint8 windows -> (pixel groups, group tables); compiled once per architecture,
    window size and options, whichever variables are passed."""
    patch = module.config.vision.patch_size
    grid = (window_hw[0] // patch, window_hw[1] // patch)
    # The patch conv ignores a remainder narrower than a patch, as PyTorch's did.
    pixels = normalize_pixels(windows[:, :grid[0] * patch, :grid[1] * patch])
    outputs = module.apply(variables, pixels, method="encode_image")
    if kmeans:
        embed = functools.partial(module.apply, variables, method="embed_segments")
        outputs = kmeans_segments(outputs, kmeans, embed)
    groups, tables = score_windows(outputs, class_embeds, logit_scale, grid, window_hw,
                                   bg_thresh, with_background)
    return groups.astype(jnp.uint8 if tables.shape[1] <= 256 else jnp.int32), tables


class SegmentationPredictor:
    """One model, one class list: image(s) -> int32 label maps of the original sizes.

    Labels: with background, 0 = background and c + 1 = class_names[c]; without, c.
    kmeans > 0 replaces the model's segments by that many k-means clusters of its final
    segment tokens in every window (the paper's "ViT + k-means" baseline); 0 keeps them.

    A predictor holds the model's variables (placed on its mesh) and the class
    embeddings they give; a model with other variables needs a new predictor, which
    reuses the compiled window pass.
    """

    def __init__(self, model, class_names: Sequence[str], *, with_background: bool = True,
                 bg_thresh: float = 0.95, template: str | Sequence[str] = DEFAULT_TEMPLATE,
                 devices: Sequence[jax.Device] | None = None,
                 windows_per_device: int = WINDOWS_PER_DEVICE, scale: Scale = RELEASED,
                 kmeans: int = 0):
        if not class_names:
            raise ValueError("class_names is empty.")
        if not isinstance(kmeans, (int, np.integer)) or kmeans < 0:
            raise ValueError(f"kmeans={kmeans!r}: expected a number of clusters >= 1, or 0 "
                             "for the model's own segments.")
        if not 0 <= bg_thresh <= 1:
            raise ValueError(f"bg_thresh={bg_thresh!r}: a score threshold in [0, 1].")
        self.kmeans = int(kmeans)
        self.model = model
        self.class_names = tuple(class_names)
        self.with_background = with_background
        self.bg_thresh = float(bg_thresh)
        self.templates = resolve_templates(template)
        self.scale = scale
        self.mesh = Mesh(np.array(list(devices or jax.local_devices())), ("windows",))
        self.window_batch = windows_per_device * self.mesh.size
        self._windows = NamedSharding(self.mesh, P("windows"))
        replicated = NamedSharding(self.mesh, P())
        self._variables = jax.device_put(host_local(model.variables), replicated)
        self._class_embeds = jax.device_put(
            text_classifier(model, self.class_names, self.templates), replicated)
        self._logit_scale = model.logit_scale
        self._window_pass = functools.partial(_window_pass, module=model.module,
                                              kmeans=self.kmeans,
                                              with_background=with_background)

    def batch_size(self, num_windows: int) -> int:
        """Windows per tower call for `num_windows`: a power of two per device, at most
        `window_batch` (few shapes to compile, little padding for a single image)."""
        per_device = -(-num_windows // self.mesh.size)
        return min(self.window_batch, self.mesh.size * 2 ** int(np.ceil(np.log2(per_device))))

    def run_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 [N, h, w, 3] windows of one size -> (groups [N, h, w], tables [N, S, K]),
        in batches padded to `batch_size`."""
        pending = []
        size = self.batch_size(len(windows))
        for start in range(0, len(windows), size):  # all dispatched first, then read back
            padded = np.zeros((size, *windows.shape[1:]), np.uint8)
            batch = windows[start:start + size]
            padded[:len(batch)] = batch
            pending.append(self._window_pass(
                jax.device_put(padded, self._windows), windows.shape[1:3], self._variables,
                self._class_embeds, self._logit_scale, np.float32(self.bg_thresh)))
        groups = np.concatenate([np.asarray(g) for g, _ in pending])[:len(windows)]
        tables = np.concatenate([np.asarray(t) for _, t in pending])[:len(windows)]
        return groups, tables

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """RGB uint8 [H, W, 3] images (any sizes) -> int32 [H, W] label maps."""
        for i, image in enumerate(images):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
                raise ValueError(f"image {i}: expected RGB uint8 [H, W, 3], got "
                                 f"{image.dtype} {image.shape}.")
        resized = [resize_for_protocol(image, self.scale) for image in images]
        boxes = [window_boxes(*r.shape[:2], self.scale.window, self.scale.stride)
                 for r in resized]
        by_size = defaultdict(list)  # window size -> [(image index, window index)]
        for i, image_boxes in enumerate(boxes):
            for j, box in enumerate(image_boxes):
                by_size[box.height, box.width].append((i, j))
        groups = [[None] * len(b) for b in boxes]
        tables = [[None] * len(b) for b in boxes]
        for keys in by_size.values():
            crops = np.stack([resized[i][b.top:b.top + b.height, b.left:b.left + b.width]
                              for i, j in keys for b in [boxes[i][j]]])
            for (i, j), g, t in zip(keys, *self.run_windows(crops)):
                groups[i][j], tables[i][j] = g, t
        return [label_map(g, t, b, r.shape[:2], image.shape[:2])
                for image, r, b, g, t in zip(images, resized, boxes, groups, tables)]


def predict_segmentation(model, image: np.ndarray, class_names: Sequence[str],
                         bg_thresh: float = 0.95, with_background: bool = True,
                         template: str | Sequence[str] = DEFAULT_TEMPLATE,
                         scale: Scale = RELEASED) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> int32 [H, W] labels: 0 = background, c + 1 = class_names[c]
    (without background: c = class_names[c]). For many images build one
    SegmentationPredictor: this embeds the class names again on every call."""
    predictor = SegmentationPredictor(model, class_names, bg_thresh=bg_thresh,
                                      with_background=with_background, template=template,
                                      scale=scale)
    return predictor.predict([np.asarray(image)])[0]
