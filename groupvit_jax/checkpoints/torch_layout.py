"""Where every GroupViT weight lives in the PyTorch checkpoints, and how to move it.

One table serves both PyTorch layouts the users have: the NVlabs release
(`img_encoder.*`, fused qkv, Conv1d projectors) and Hugging Face `GroupViTModel`
(`vision_model.*`, split q/k/v). Each entry names our variable, the PyTorch key(s)
and the layout change, so import and export are the same table read both ways.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
from flax import traverse_util

from groupvit_jax.models.config import GroupViTConfig

NVLABS, HF = "nvlabs", "hf"
# Buffers in PyTorch state dicts that carry no weights.
IGNORED_SUFFIXES = ("num_batches_tracked", "position_ids")


@dataclasses.dataclass(frozen=True)
class Entry:
    collection: str                  # "params" or "batch_stats"
    path: tuple[str, ...]            # our variable inside the collection
    keys: tuple[str, ...]            # PyTorch key(s); several are concatenated on axis 0
    to_ours: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]


def _same(a):
    return a


def _linear(a):     # [out, in] <-> [in, out]
    return a.T


def _conv1d_to_ours(a):   # Conv1d k=1 [out, in, 1] -> [in, out]
    return a[..., 0].T


def _conv1d_to_torch(a):
    return a.T[..., None]


def _conv_to_ours(a):     # OIHW -> HWIO
    return a.transpose(2, 3, 1, 0)


def _conv_to_torch(a):
    return a.transpose(3, 2, 0, 1)


class _Table:
    """Collects entries while walking the architecture once."""

    def __init__(self, flavor):
        self.flavor = flavor
        self.entries: list[Entry] = []

    def pick(self, nvlabs, hf):
        return nvlabs if self.flavor == NVLABS else hf

    def add(self, path, keys, to_ours=_same, to_torch=_same, collection="params"):
        keys = (keys,) if isinstance(keys, str) else tuple(keys)
        self.entries.append(Entry(collection, tuple(path), keys, to_ours, to_torch))

    def dense(self, path, key, conv1d=False):
        if conv1d:
            self.add(path + ("kernel",), key + ".weight", _conv1d_to_ours, _conv1d_to_torch)
        else:
            self.add(path + ("kernel",), key + ".weight", _linear, _linear)
        self.add(path + ("bias",), key + ".bias")

    def norm(self, path, key):
        self.add(path + ("scale",), key + ".weight")
        self.add(path + ("bias",), key + ".bias")

    def batch_norm(self, path, key):
        self.norm(path, key)
        self.add(path + ("mean",), key + ".running_mean", collection="batch_stats")
        self.add(path + ("var",), key + ".running_var", collection="batch_stats")

    def mlp(self, path, key, fc1="fc1", fc2="fc2"):
        self.dense(path + ("fc1",), f"{key}.{fc1}")
        self.dense(path + ("fc2",), f"{key}.{fc2}")

    def qkv(self, path, fused_key, split_prefix):
        """Our fused qkv projection; NVlabs keeps it fused ([q;k;v] rows), HF splits it."""
        if self.flavor == NVLABS:
            weight, bias = fused_key
            self.add(path + ("kernel",), weight, _linear, _linear)
            self.add(path + ("bias",), bias)
        else:
            names = [f"{split_prefix}{x}_proj" for x in "qkv"]
            self.add(path + ("kernel",), [n + ".weight" for n in names], _linear, _linear)
            self.add(path + ("bias",), [n + ".bias" for n in names])


def _vision(t: _Table, cfg: GroupViTConfig):
    v = cfg.vision
    root = t.pick("img_encoder", "vision_model")
    tower = ("image_tower",)
    t.add(tower + ("patch_embed", "kernel"),
          t.pick(f"{root}.patch_embed.proj", f"{root}.embeddings.patch_embeddings.projection")
          + ".weight", _conv_to_ours, _conv_to_torch)
    t.add(tower + ("patch_embed", "bias"),
          t.pick(f"{root}.patch_embed.proj", f"{root}.embeddings.patch_embeddings.projection")
          + ".bias")
    t.norm(tower + ("patch_norm",), t.pick(f"{root}.patch_embed.norm", f"{root}.embeddings.layernorm"))
    t.add(tower + ("pos_embed",), t.pick(f"{root}.pos_embed", f"{root}.embeddings.position_embeddings"))
    for s, depth in enumerate(v.depths):
        stage = tower + (f"stage_{s}",)
        skey = t.pick(f"{root}.layers.{s}", f"{root}.encoder.stages.{s}")
        if v.num_group_tokens[s]:
            t.add(stage + ("group_tokens",), f"{skey}.group_token")
            if s > 0:
                t.norm(stage + ("group_projector_norm",), f"{skey}.group_projector.0")
                t.mlp(stage + ("group_projector", "mlp"), f"{skey}.group_projector.1")
        for i in range(depth):
            block = stage + (f"block_{i}",)
            bkey = t.pick(f"{skey}.blocks.{i}", f"{skey}.layers.{i}")
            _block(t, block, bkey, text=False)
        if v.num_group_tokens[s]:
            g, gkey = stage + ("grouping",), f"{skey}.downsample"
            t.norm(g + ("norm_groups",), f"{gkey}.norm_tokens")
            t.norm(g + ("norm_tokens",), f"{gkey}.norm_x")
            t.mlp(g + ("token_mlp", "mlp"), f"{gkey}.mlp_inter")
            t.norm(g + ("norm_projected",), f"{gkey}.norm_post_tokens")
            c, ckey = g + ("cross_attn",), f"{gkey}.pre_assign_attn"
            for ours, name in zip("qkv", ("q_proj", "k_proj", "v_proj")):
                t.dense(c + ("attn", ours), f"{ckey}.attn.{name}")
            t.dense(c + ("attn", "proj"), f"{ckey}.attn." + t.pick("proj", "out_proj"))
            t.norm(c + ("norm",), f"{ckey}.norm2")
            t.mlp(c + ("mlp",), f"{ckey}.mlp")
            t.norm(c + ("norm_post",), f"{ckey}.norm_post")
            for ours, name in zip(("q", "k", "v", "proj"), ("q_proj", "k_proj", "v_proj", "proj")):
                t.dense(g + ("assign", ours), f"{gkey}.assign.{name}")
            t.norm(g + ("norm_out",), f"{gkey}.norm_new_x")
            t.mlp(g + ("mlp",), f"{gkey}.mlp_channels")
    t.norm(tower + ("norm",), t.pick(f"{root}.norm", f"{root}.layernorm"))


def _block(t: _Table, path, key, text: bool):
    if t.flavor == HF:
        t.norm(path + ("norm1",), f"{key}.layer_norm1")
        t.qkv(path + ("attn", "qkv"), None, f"{key}.self_attn.")
        t.dense(path + ("attn", "proj"), f"{key}.self_attn.out_proj")
        t.norm(path + ("norm2",), f"{key}.layer_norm2")
        t.mlp(path + ("mlp",), f"{key}.mlp")
    elif text:
        t.norm(path + ("norm1",), f"{key}.ln_1")
        t.qkv(path + ("attn", "qkv"), (f"{key}.attn.in_proj_weight", f"{key}.attn.in_proj_bias"), None)
        t.dense(path + ("attn", "proj"), f"{key}.attn.out_proj")
        t.norm(path + ("norm2",), f"{key}.ln_2")
        t.mlp(path + ("mlp",), f"{key}.mlp", fc1="c_fc", fc2="c_proj")
    else:
        t.norm(path + ("norm1",), f"{key}.norm1")
        t.qkv(path + ("attn", "qkv"), (f"{key}.attn.qkv.weight", f"{key}.attn.qkv.bias"), None)
        t.dense(path + ("attn", "proj"), f"{key}.attn.proj")
        t.norm(path + ("norm2",), f"{key}.norm2")
        t.mlp(path + ("mlp",), f"{key}.mlp")


def _text(t: _Table, cfg: GroupViTConfig):
    tower = ("text_tower",)
    root = t.pick("text_encoder", "text_model")
    t.add(tower + ("token_embed", "embedding"),
          t.pick(f"{root}.token_embedding.weight", f"{root}.embeddings.token_embedding.weight"))
    t.add(tower + ("pos_embed",),
          t.pick(f"{root}.positional_embedding", f"{root}.embeddings.position_embedding.weight"))
    for i in range(cfg.text.depth):
        _block(t, tower + (f"block_{i}",),
               t.pick(f"{root}.transformer.resblocks.{i}", f"{root}.encoder.layers.{i}"), text=True)
    t.norm(tower + ("norm",), t.pick(f"{root}.ln_final", f"{root}.final_layer_norm"))


def _heads(t: _Table, cfg: GroupViTConfig):
    for ours, nv, hf in (("image_head", "img_projector", "visual_projection"),
                         ("text_head", "text_projector", "text_projection")):
        if t.flavor == NVLABS:
            t.dense((ours, "fc1"), f"{nv}.linear_hidden.0", conv1d=True)
            t.batch_norm((ours, "bn"), f"{nv}.linear_hidden.1")
            t.dense((ours, "fc2"), f"{nv}.linear_out", conv1d=True)
        else:
            t.dense((ours, "fc1"), f"{hf}.0")
            t.batch_norm((ours, "bn"), f"{hf}.1")
            t.dense((ours, "fc2"), f"{hf}.3")
    t.add(("logit_scale",), "logit_scale")
    if cfg.multi_label_scale:
        if t.flavor == HF:
            raise ValueError("Hugging Face GroupViTModel has no multi-label temperature; "
                             "use a config with multi_label_scale=False.")
        t.add(("multi_label_logit_scale",), "multi_label_logit_scale")


def layout(cfg: GroupViTConfig, flavor: str) -> list[Entry]:
    """All entries of a model with this architecture in one PyTorch layout."""
    if flavor not in (NVLABS, HF):
        raise ValueError(f"Unknown PyTorch layout {flavor!r}; expected {NVLABS!r} or {HF!r}.")
    if not cfg.vision.num_output_groups:
        # Both readers take the grouping blocks' shapes from the checkpoint.
        raise ValueError(f"num_group_tokens={cfg.vision.num_group_tokens}: a plain ViT (no "
                         "grouping stage) has no GroupViT PyTorch layout; use our export "
                         "format (gv.export).")
    t = _Table(flavor)
    _vision(t, cfg)
    _text(t, cfg)
    _heads(t, cfg)
    return t.entries


def from_torch(state: dict[str, np.ndarray], cfg: GroupViTConfig, flavor: str,
               source: str = "checkpoint") -> dict:
    """PyTorch state dict (numpy arrays) -> {"params": ..., "batch_stats": ...}.

    Every key must be used and every variable found: anything else is an error
    naming the keys, so a wrong architecture never loads silently.
    """
    entries = layout(cfg, flavor)
    wanted = {k for e in entries for k in e.keys}
    missing = sorted(wanted - set(state))
    unexpected = sorted(k for k in set(state) - wanted if not k.endswith(IGNORED_SUFFIXES))
    if missing or unexpected:
        raise ValueError(f"{source} does not match a {flavor} GroupViT with this architecture:\n"
                         f"  missing keys ({len(missing)}): {missing[:20]}\n"
                         f"  unexpected keys ({len(unexpected)}): {unexpected[:20]}")
    flat = {"params": {}, "batch_stats": {}}
    for e in entries:
        arrays = [np.asarray(state[k], np.float32) for k in e.keys]
        value = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        flat[e.collection][e.path] = e.to_ours(value)
    return {c: traverse_util.unflatten_dict(f) for c, f in flat.items()}


def to_torch(variables: dict, cfg: GroupViTConfig, flavor: str) -> dict[str, np.ndarray]:
    """{"params", "batch_stats"} -> PyTorch state dict (numpy float32) in that layout."""
    flat = {c: traverse_util.flatten_dict(variables[c]) for c in ("params", "batch_stats")}
    state = {}
    for e in layout(cfg, flavor):
        value = np.asarray(e.to_torch(np.asarray(flat[e.collection][e.path], np.float32)))
        parts = np.split(value, len(e.keys), axis=0) if len(e.keys) > 1 else [value]
        for key, part in zip(e.keys, parts):
            state[key] = np.array(part, order="C")  # ascontiguousarray would make scalars 1-D
    return state
