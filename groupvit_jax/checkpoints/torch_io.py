"""Reading PyTorch GroupViT checkpoints: NVlabs .pth files and Hugging Face folders.

Each reader returns (state dict of numpy arrays, GroupViTConfig, layout flavor).
The architecture is read from the tensors' shapes, so a checkpoint and its
config can never disagree; only head counts, which shapes do not show, come from
the checkpoint's own config. A file that cannot be decoded, and weights with NaN or inf
(corruption that still decodes), are ValueErrors naming the file.
"""
from __future__ import annotations

import logging
import pickle
import re
import types

import numpy as np
from etils import epath

from groupvit_jax.checkpoints import integrity, torch_layout
from groupvit_jax.models.config import GroupViTConfig, TextConfig, VisionConfig
from input_pipeline import cli

HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class _Opaque:
    """Stands in for any pickled class that is not torch's: records its state, runs nothing."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds tensors and plain containers; anything else (the NVlabs OmegaConf
    config) becomes inert `_Opaque` data. Runs no code a checkpoint names, unlike
    weights_only=False, and needs no omegaconf install."""

    _BUILTINS = {"set", "frozenset", "dict", "list", "tuple", "int", "float", "bool", "str",
                 "bytes", "slice"}

    def _allowed(self, module, name):
        if module == "torch._utils":
            return name.startswith("_rebuild")
        if module == "torch":
            return name.endswith("Storage") or name in ("Size", "device", "Tensor") or (
                isinstance(getattr(_torch(), name, None), _torch().dtype))
        return ((module, name) in {("collections", "OrderedDict"),
                                   ("torch.serialization", "_get_layout"),
                                   ("torch._tensor", "_rebuild_from_type_v2"),
                                   ("torch.nn.parameter", "Parameter")}
                or (module == "builtins" and name in self._BUILTINS))

    def find_class(self, module, name):
        if self._allowed(module, name):
            return super().find_class(module, name)
        return type(name, (_Opaque,), {})


_restricted_pickle = types.SimpleNamespace(Unpickler=_RestrictedUnpickler, load=pickle.load,
                                           __name__="groupvit_restricted_pickle")


def _plain(obj):
    """An unpickled OmegaConf node (or plain container) -> plain Python data."""
    if isinstance(obj, _Opaque):
        state = getattr(obj, "state", {}) or {}
        if isinstance(state, dict):
            if "_content" in state:
                return _plain(state["_content"])
            if "_val" in state:
                return _plain(state["_val"])
        return None
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError("Reading PyTorch .pth/.bin checkpoints needs torch: "
                          "pip install 'groupvit_jax[torch]'.") from e
    return torch


def _numpy_state(state) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy() for k, v in state.items() if hasattr(v, "detach")}


def _torch_load(path: epath.Path, **kwargs):
    torch = _torch()
    try:
        with path.open("rb") as f:  # a file object: torch.load reads no gs:// name itself
            return torch.load(f, map_location="cpu", **kwargs)
    except OSError:  # missing, unreadable: the OS's own message names the file
        raise
    except Exception as e:  # torch raises many kinds for a bad file (truncated: RuntimeError)
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({e}).") from e


def read_nvlabs(path: epath.Path):
    ckpt = _torch_load(path, weights_only=False, pickle_module=_restricted_pickle)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        keys = list(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path}: an NVlabs GroupViT checkpoint holds its weights under 'model'; "
                         f"found {keys}.")
    state = _numpy_state(ckpt["model"])
    integrity.check_finite(state.items(), path)
    meta = _plain(ckpt.get("config")) or {}
    model_meta = meta.get("model", {}) if isinstance(meta, dict) else {}
    return state, nvlabs_config(state, model_meta, str(path)), torch_layout.NVLABS


def _count(state, pattern):
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def nvlabs_config(state, meta: dict | None = None, source="state dict") -> GroupViTConfig:
    """The architecture of an NVlabs state dict; `meta` is its pickled `config.model`."""
    meta = meta or {}
    img_meta = meta.get("img_encoder") or {}
    try:
        pos = state["img_encoder.pos_embed"]
        width = pos.shape[-1]
        patch = state["img_encoder.patch_embed.proj.weight"].shape[-1]
        depths, groups, outputs = [], [], []
        for s in range(_count(state, r"img_encoder\.layers\.(\d+)\.")):
            pre = f"img_encoder.layers.{s}"
            depths.append(_count(state, re.escape(pre) + r"\.blocks\.(\d+)\."))
            token = state.get(f"{pre}.group_token")
            groups.append(0 if token is None else token.shape[1])
            if token is not None:
                outputs.append(state[f"{pre}.downsample.mlp_inter.fc2.weight"].shape[0])
        if "num_heads" not in img_meta:
            logging.warning("%s: its config names no img_encoder.num_heads; assuming width // 64 "
                            "= %d, as in the released models.", source, width // 64)
        heads = img_meta.get("num_heads", width // 64)
        heads = heads[0] if isinstance(heads, list) else heads
        vision = VisionConfig(
            image_size=int(round(np.sqrt(pos.shape[1]))) * patch, patch_size=patch, width=width,
            num_heads=heads,
            mlp_ratio=state["img_encoder.layers.0.blocks.0.mlp.fc1.weight"].shape[0] / width,
            depths=tuple(depths), num_group_tokens=tuple(groups), num_output_groups=tuple(outputs),
            token_mlp_ratio=state["img_encoder.layers.0.downsample.mlp_inter.fc1.weight"].shape[0] / width,
            drop_path_rate=img_meta.get("drop_path_rate", 0.1),
            hard_assignment=img_meta.get("hard_assignment", True),
        )
        tok = state["text_encoder.token_embedding.weight"]
        text = TextConfig(
            vocab_size=tok.shape[0], width=tok.shape[1],
            context_length=state["text_encoder.positional_embedding"].shape[0],
            num_heads=tok.shape[1] // 64,  # the NVlabs text transformer fixes 64-wide heads
            depth=_count(state, r"text_encoder\.transformer\.resblocks\.(\d+)\."),
            mlp_ratio=state["text_encoder.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / tok.shape[1],
        )
        return GroupViTConfig(
            vision=vision, text=text,
            projection_dim=state["img_projector.linear_out.weight"].shape[0],
            projection_hidden=state["img_projector.linear_hidden.0.weight"].shape[0],
            logit_scale_init=float(np.log(1 / meta.get("contrast_temperature", 0.07))),
            multi_label_scale="multi_label_logit_scale" in state)
    except KeyError as e:
        raise ValueError(f"{source}: not an NVlabs GroupViT state dict: key {e} is missing.") from None


def read_hf(folder: epath.Path):
    cfg_file = folder / "config.json"
    hf = cli.read_json(cfg_file)  # invalid JSON: a ValueError naming the file
    model_type = hf.get("model_type") if isinstance(hf, dict) else type(hf).__name__
    if model_type != "groupvit":
        raise ValueError(f"{cfg_file}: model_type is {model_type!r}, not 'groupvit'.")
    config = integrity.parse_config(cfg_file, lambda: hf_config(hf, cfg_file))
    weights = next((folder / f for f in HF_WEIGHT_FILES if (folder / f).exists()), None)
    if weights is None:
        raise ValueError(f"{folder}: no weights file; expected one of {HF_WEIGHT_FILES}.")
    if weights.suffix == ".safetensors":
        state = _read_safetensors(weights)
    else:
        state = _numpy_state(_torch_load(weights, weights_only=True))
    integrity.check_finite(state.items(), weights)
    return state, config, torch_layout.HF


def _read_safetensors(path: epath.Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load
    try:
        return {k: v.astype(np.float32) for k, v in load(path.read_bytes()).items()}
    except SafetensorError as e:  # truncated or damaged
        raise ValueError(f"{path}: not a readable safetensors file ({e}).") from e


def hf_config(hf: dict, source="config.json") -> GroupViTConfig:
    v, t = hf.get("vision_config", {}), hf.get("text_config", {})
    for part, act, want in (("vision", v.get("hidden_act", "gelu"), "gelu"),
                            ("text", t.get("hidden_act", "quick_gelu"), "quick_gelu")):
        if act != want:
            raise ValueError(f"{source}: {part} hidden_act {act!r} is not supported (GroupViT uses {want!r}).")
    depths = tuple(v.get("depths", (6, 3, 3)))
    groups = tuple(v.get("num_group_tokens", (64, 8, 0)))
    outputs = tuple(v.get("num_output_groups", (64, 8, 8)))
    width = v.get("hidden_size", 384)
    ratio = v.get("assign_mlp_ratio", (0.5, 4))
    ratio = ratio if isinstance(ratio, (list, tuple)) else (ratio, ratio)
    vision = VisionConfig(
        image_size=v.get("image_size", 224), patch_size=v.get("patch_size", 16), width=width,
        num_heads=v.get("num_attention_heads", 6), mlp_ratio=v.get("intermediate_size", 1536) / width,
        depths=depths, num_group_tokens=groups,
        num_output_groups=tuple(o for o, g in zip(outputs, groups) if g),
        token_mlp_ratio=ratio[0], assign_eps=v.get("assign_eps", 1.0))
    if ratio[1] != vision.mlp_ratio:
        raise ValueError(f"{source}: assign_mlp_ratio[1]={ratio[1]} differs from the blocks' MLP "
                         f"ratio {vision.mlp_ratio}; this port shares one ratio.")
    tw = t.get("hidden_size", 256)
    text = TextConfig(vocab_size=t.get("vocab_size", 49408),
                      context_length=t.get("max_position_embeddings", 77), width=tw,
                      num_heads=t.get("num_attention_heads", 4),
                      depth=t.get("num_hidden_layers", 12),
                      mlp_ratio=t.get("intermediate_size", 1024) / tw)
    return GroupViTConfig(vision=vision, text=text, projection_dim=hf.get("projection_dim", 256),
                          projection_hidden=hf.get("projection_intermediate_dim", 4096),
                          logit_scale_init=hf.get("logit_scale_init_value", 2.6592),
                          multi_label_scale=False)
