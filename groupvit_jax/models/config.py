"""Architecture of a GroupViT model: plain frozen dataclasses, JSON round-trippable.

Defaults are the released `gcc_yfcc` / `gcc_redcap` model (55.7M parameters).
Runtime options that do not change the parameters (compute dtype, remat) live
here too, so one object describes how a model is built.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    image_size: int = 224          # training resolution; sets the position-embedding grid
    patch_size: int = 16
    width: int = 384
    num_heads: int = 6
    mlp_ratio: float = 4.0
    depths: tuple[int, ...] = (6, 3, 3)
    # Group tokens per stage; only the last stage has none (it never groups). One stage
    # with none, e.g. depths=(12,), num_group_tokens=(0,), is a plain ViT.
    num_group_tokens: tuple[int, ...] = (64, 8, 0)
    # Segments leaving each grouping stage (one entry per stage with group tokens).
    num_output_groups: tuple[int, ...] = (64, 8)
    token_mlp_ratio: float = 0.5   # grouping block's MLP over the group-token axis
    drop_path_rate: float = 0.1
    assign_eps: float = 1.0
    hard_assignment: bool = True   # False: the paper's soft-assignment ablation
    gumbel_tau: float = 1.0

    def __post_init__(self):
        n = len(self.depths)
        if len(self.num_group_tokens) != n:
            raise ValueError(f"num_group_tokens {self.num_group_tokens} needs one entry per stage "
                             f"(depths {self.depths}).")
        if self.num_group_tokens[-1] != 0 or 0 in self.num_group_tokens[:-1]:
            raise ValueError(f"num_group_tokens {self.num_group_tokens}: every stage but the last "
                             "must have group tokens, the last none.")
        if len(self.num_output_groups) != n - 1:
            raise ValueError(f"num_output_groups {self.num_output_groups} needs one entry per "
                             f"grouping stage ({n - 1}).")
        if self.width % self.num_heads:
            raise ValueError(f"width {self.width} is not divisible by num_heads {self.num_heads}.")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size "
                             f"{self.patch_size}.")

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_segments(self) -> int:
        """Segment tokens leaving the tower at the training resolution; a plain ViT's
        are its patch tokens."""
        return self.num_output_groups[-1] if self.num_output_groups else self.grid_size**2


@dataclasses.dataclass(frozen=True)
class TextConfig:
    vocab_size: int = 49408
    context_length: int = 77
    width: int = 256
    num_heads: int = 4
    depth: int = 12
    mlp_ratio: float = 4.0

    def __post_init__(self):
        if self.width % self.num_heads:
            raise ValueError(f"text width {self.width} is not divisible by num_heads {self.num_heads}.")


@dataclasses.dataclass(frozen=True)
class GroupViTConfig:
    vision: VisionConfig = VisionConfig()
    text: TextConfig = TextConfig()
    projection_dim: int = 256
    projection_hidden: int = 4096
    logit_scale_init: float = math.log(1 / 0.07)
    # Models trained with the multi-label loss carry a second temperature.
    multi_label_scale: bool = True
    # Compute dtype of matmuls and attention; parameters, norms, softmax logits and the
    # residual stream stay float32 (bfloat16 halves matmul cost without drifting
    # statistics; models/precision.py says which products return float32).
    dtype: str = "float32"
    remat: bool = False      # rematerialise each transformer block in the backward pass

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GroupViTConfig":
        d = dict(d)
        vision = _build(VisionConfig, d.pop("vision", {}), "vision")
        text = _build(TextConfig, d.pop("text", {}), "text")
        return _build(cls, {**d, "vision": vision, "text": text}, "model")

    def replace(self, **kw) -> "GroupViTConfig":
        return dataclasses.replace(self, **kw)


def _build(cls, d, where):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"Unknown {where} config keys {unknown}; known: {sorted(names)}.")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def one_stage() -> GroupViTConfig:
    """The paper's 1-stage ablation model: 64 group tokens -> 8 segments after block 6."""
    return GroupViTConfig(vision=VisionConfig(depths=(6, 6), num_group_tokens=(64, 0),
                                              num_output_groups=(8,)))
