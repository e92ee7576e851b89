"""The inference API users, evaluators and the demo share, and our export format.

    model = gv.load_pretrained(path)   # NVlabs .pth, Hugging Face folder, or our export
    out = model.encode_image(images)   # uint8 RGB [B, H, W, 3], or float ImageNet-normalised
    txt = model.encode_text(model.tokenize(["a photo of a cat."]))

Our format is a folder: `groupvit_jax.json` (format tag, model config and a SHA-256 of
every array) and `variables/`, an Orbax checkpoint of {"params", "batch_stats"}: the
same Orbax tree the trainer writes, so releases and training share one format. Every
loader checks the weights are finite, and the checksums where there are some.
"""
from __future__ import annotations

import functools
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from groupvit_jax.checkpoints import integrity, torch_io, torch_layout
from groupvit_jax.models.config import GroupViTConfig
from groupvit_jax.models.model import GroupViT, clamped_scale
from groupvit_jax.models.pixels import normalize_pixels
from input_pipeline import cli, paths
from input_pipeline.clip_tokenizer import get_tokenizer

FORMAT = "groupvit_jax/v1"
META_FILE = "groupvit_jax.json"
VARIABLES_DIR = "variables"


class PretrainedGroupViT:
    """A GroupViT model with its weights, in evaluation mode, behind jitted calls."""

    def __init__(self, config: GroupViTConfig, variables: dict):
        self.config = config
        self.module = GroupViT(config)
        self.variables = {"params": variables["params"],
                          "batch_stats": variables.get("batch_stats", {})}

    def tokenize(self, texts) -> np.ndarray:
        """Texts -> int32 [N, context_length] CLIP BPE ids (long texts are truncated)."""
        return get_tokenizer(self.config.text.context_length)(texts)

    def encode_image(self, images) -> dict:
        """image_embeds [B, D], segment_embeds [B, S, D] (projected, not normalised),
        soft_maps / hard_maps: one [B, S_out, N_in] per grouping stage, and more.

        `images` [B, H, W, 3] RGB: uint8 0-255 pixels are normalised here with the
        ImageNet mean/std every GroupViT was trained with (models/pixels.py); float
        images must already be normalised so. Other dtypes, an empty batch and NaN or
        inf pixels are ValueErrors.
        """
        return _encode_image(self.module, self.variables, model_pixels(images))

    def encode_text(self, tokens) -> jax.Array:
        """int [N, L] ids in [0, vocab_size) -> text embeddings [N, D], projected, not
        normalised."""
        tokens = np.asarray(tokens)
        if not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"tokens must be integer ids, got dtype {tokens.dtype}; "
                             "use model.tokenize(texts).")
        if tokens.ndim != 2 or not tokens.shape[0]:
            raise ValueError(f"tokens must be a non-empty [N, L] batch of ids, got shape "
                             f"{tokens.shape}.")
        vocab = self.config.text.vocab_size
        outside = (tokens < 0) | (tokens >= vocab)
        if outside.any():
            where = tuple(int(i) for i in np.argwhere(outside)[0])
            raise ValueError(f"token id {tokens[where]} at {list(where)} is outside the "
                             f"vocabulary of {vocab} ids [0, {vocab}); use model.tokenize(texts).")
        return _encode_text(self.module, self.variables, tokens.astype(np.int32))["text_embeds"]

    @property
    def logit_scale(self) -> np.float32:
        """min(exp(logit_scale), 100) in float32: the factor on cosine similarities."""
        return np.float32(clamped_scale(np.float32(self.variables["params"]["logit_scale"])))


def model_pixels(images) -> jax.Array:
    """encode_image's input rule: uint8 RGB -> normalised float32; float -> float32 as
    it is (already normalised); anything else, an empty batch or NaN/inf is an error."""
    images = images if isinstance(images, jax.Array) else np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or not images.shape[0]:
        raise ValueError(f"images must be a non-empty [B, H, W, 3] RGB batch, got shape "
                         f"{images.shape}.")
    if images.dtype == np.uint8:
        return normalize_pixels(images)
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"images of dtype {images.dtype}: pass uint8 RGB pixels (0-255, "
                         "normalised by the model) or floats already ImageNet-normalised.")
    images = jnp.asarray(images, jnp.float32)
    if not jnp.isfinite(images).all():
        raise ValueError(f"images hold {int(jnp.size(images) - jnp.isfinite(images).sum())} "
                         "NaN or inf values.")
    return images


# Module-level, keyed by the (hashable) module: every PretrainedGroupViT of one
# architecture shares the compiled code, whichever variables it holds.
@functools.partial(jax.jit, static_argnums=0)
def _encode_image(module: GroupViT, variables, images):
    return module.apply(variables, images, method="encode_image")


@functools.partial(jax.jit, static_argnums=0)
def _encode_text(module: GroupViT, variables, tokens):
    return module.apply(variables, tokens, method="encode_text")


def abstract_variables(config: GroupViTConfig) -> dict:
    """Shapes and dtypes of a model's variables, without allocating them."""
    module = GroupViT(config)
    size = config.vision.image_size
    images = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    tokens = jax.ShapeDtypeStruct((1, config.text.context_length), jnp.int32)
    return jax.eval_shape(lambda i, t: module.init(jax.random.key(0), i, t), images, tokens)


def check_shapes(variables, config, source):
    """Raises a ValueError naming `source` unless `variables` are the model's."""
    expected = abstract_variables(config)
    for collection in ("params", "batch_stats"):
        want = jax.tree_util.tree_flatten_with_path(expected[collection])[0]
        got = dict(jax.tree_util.tree_flatten_with_path(variables[collection])[0])
        for path, spec in want:
            if path not in got:
                raise ValueError(f"{source}: missing {collection}{jax.tree_util.keystr(path)}.")
            if tuple(np.shape(got[path])) != spec.shape:
                raise ValueError(f"{source}: {collection}{jax.tree_util.keystr(path)} has shape "
                                 f"{np.shape(got[path])}, the model expects {spec.shape}.")


def detect_format(path: epath.Path) -> str:
    """'ours', 'hf' or 'nvlabs'; a clear error for anything else."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory.")
    if path.is_dir():
        if (path / META_FILE).exists():
            return "ours"
        if (path / "config.json").exists():
            return torch_layout.HF
        raise ValueError(f"{path}: a folder, but neither our export ({META_FILE}) nor a Hugging "
                         "Face model (config.json + weights).")
    if path.suffix in (".pth", ".pt", ".bin"):
        return torch_layout.NVLABS
    raise ValueError(f"{path}: unknown checkpoint type; expected an NVlabs .pth file, a Hugging "
                     f"Face model folder or a groupvit_jax export folder.")


def read_export(path: epath.Path) -> tuple[GroupViTConfig, dict]:
    meta_file = path / META_FILE
    meta = cli.read_json(meta_file)  # invalid JSON: a ValueError naming the file
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{meta_file}: format {found!r}, expected {FORMAT!r}.")
    config = integrity.parse_config(meta_file, lambda: GroupViTConfig.from_dict(meta["model"]))
    target = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), abstract_variables(config))
    variables_dir = paths.absolute(path / VARIABLES_DIR)
    if not variables_dir.is_dir():
        raise FileNotFoundError(f"{variables_dir}: missing; {path} is an incomplete export.")
    try:
        with ocp.StandardCheckpointer() as ckptr:
            variables = ckptr.restore(variables_dir, target)
    except Exception as e:  # Orbax and TensorStore raise many kinds for damaged files
        raise ValueError(f"{variables_dir}: not a readable Orbax checkpoint "
                         f"({type(e).__name__}: {e}).") from e
    if "sha256" in meta:
        integrity.verify_checksums(variables, meta["sha256"], variables_dir)
    else:
        logging.warning("%s: written without checksums; only checked for NaN and inf. Export "
                        "it again to add them.", meta_file)
    return config, variables


def load_pretrained(path: str | os.PathLike, **config_overrides) -> PretrainedGroupViT:
    """Loads an NVlabs .pth, a Hugging Face GroupViT folder or our export folder, local or
    in a bucket (gs://).

    `config_overrides` replace runtime options of the model config (e.g. dtype="bfloat16").
    """
    path = paths.as_path(path)
    kind = detect_format(path)
    if kind == "ours":
        config, variables = read_export(path)
        integrity.check_finite(integrity.named_leaves(variables), path / VARIABLES_DIR)
    else:
        reader = torch_io.read_hf if kind == torch_layout.HF else torch_io.read_nvlabs
        state, config, flavor = reader(path)
        variables = torch_layout.from_torch(state, config, flavor, source=str(path))
    check_shapes(variables, config, str(path))
    return PretrainedGroupViT(config.replace(**config_overrides), variables)


def check_export_destination(out_dir: str | os.PathLike, overwrite: bool) -> epath.Path:
    """The absolute export folder, if `export` may write it: a clear OSError naming it
    otherwise (not empty without overwrite, a file, not writable), before any work."""
    out = paths.absolute(out_dir)
    cli.check_writable(out, folder=True)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True "
                              "(--overwrite) to replace it.")
    return out


def export(model: PretrainedGroupViT, out_dir: str | os.PathLike, overwrite: bool = False
           ) -> epath.Path:
    """Writes `model` in our format (a local folder or gs://); refuses to replace an
    existing folder unless asked, and to write weights with NaN or inf."""
    out = check_export_destination(out_dir, overwrite)
    variables = jax.tree.map(np.asarray, model.variables)
    integrity.check_finite(integrity.named_leaves(variables), "the model to export")
    out.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(out / VARIABLES_DIR, variables, force=overwrite)
    meta = {"format": FORMAT, "model": model.config.to_dict(),
            "sha256": integrity.checksums(variables)}
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    return out
