"""The protocol's image sizes and its bilinear resampling, in PyTorch's arithmetic.

Images are resized (OpenCV, uint8) so the short side is 448 with the long side at most
2048, as the released mmseg pipeline did (`img_scale=(2048, 448)`, keep_ratio). Score
maps are resampled like `F.interpolate(mode="bilinear", align_corners=False)`: half-pixel
centres, source index clamped at 0, the same float32 taps as PyTorch's CPU kernel (its
source index is one fused multiply-add). PyTorch's blending order is not reproduced, so
values may differ from it in the last bit: argmaxes agree except at float32 ties.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from absl import flags

from input_pipeline import cli
from input_pipeline.eval_readers import resize_short_side


@dataclasses.dataclass(frozen=True)
class Scale:
    """Where the protocol puts an image: its short side (long side capped), then windows.

    The released values suit models trained at 224 (windows of twice that). A model
    trained at another resolution, like the toy world's 64, needs its own: the tower
    must see things at about the size it learned them.
    """
    short_side: int = 448
    long_side_max: int = 2048
    window: int = 448
    stride: int = 224

    def __post_init__(self):
        if not 0 < self.stride <= self.window or min(self.short_side, self.long_side_max) < 1:
            raise ValueError(f"invalid evaluation scale {self}: sizes must be positive and "
                             "0 < stride <= window.")


RELEASED = Scale()


def resize_for_protocol(image: np.ndarray, scale: Scale = RELEASED) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> uint8 with short side 448 (long side <= 2048) or `scale`'s."""
    return resize_short_side(image, scale.short_side, scale.long_side_max)


def add_scale_flags(flag_values: flags.FlagValues) -> None:
    """--short_side --long_side_max --window --stride, defaults the released protocol's."""
    for field in dataclasses.fields(Scale):
        flags.DEFINE_integer(field.name, field.default, "the released protocol's default; change "
                             "only for a model trained at another resolution", lower_bound=1,
                             flag_values=flag_values)


def scale_from_flags(args: flags.FlagValues) -> Scale:
    """The Scale of add_scale_flags' flags; inconsistent ones are a cli.UsageError."""
    try:
        return Scale(**{field.name: getattr(args, field.name)
                        for field in dataclasses.fields(Scale)})
    except ValueError as e:
        raise cli.UsageError(f"--stride, --window: {e}") from e


def bilinear_taps(in_size: int, out_size: int):
    """For each output index: the two source indices and their float32 weights."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}.")
    out = np.arange(out_size)
    if in_size == out_size:  # PyTorch's shortcut: weights exactly (1, 0)
        return out, out, np.ones(out_size, np.float32), np.zeros(out_size, np.float32)
    scale = np.float32(in_size) / np.float32(out_size)
    # float32 scale times a half-integer is exact in float64: one rounding, as an FMA.
    src = np.maximum((np.float64(scale) * (out + 0.5) - 0.5).astype(np.float32), 0)
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    lam1 = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    i1 = i0 + (i0 < in_size - 1)
    return i0, i1, np.float32(1) - lam1, lam1


def upsample_bilinear(x, out_hw: tuple[int, int]):
    """jax [B, H, W, C] -> [B, out_h, out_w, C]: blends the width pair, then the height
    pair, with `bilinear_taps`."""
    (y0, y1, wy0, wy1), (x0, x1, wx0, wx1) = (bilinear_taps(x.shape[1], out_hw[0]),
                                              bilinear_taps(x.shape[2], out_hw[1]))
    across = (x[:, :, x0] * wx0[None, None, :, None] + x[:, :, x1] * wx1[None, None, :, None])
    return across[:, y0] * wy0[None, :, None, None] + across[:, y1] * wy1[None, :, None, None]
