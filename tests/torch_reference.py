"""Hugging Face GroupViT models built offline, as parity references for the tests."""
from __future__ import annotations

import numpy as np
import torch
import transformers

from groupvit_jax.checkpoints import torch_layout
from groupvit_jax.checkpoints.torch_io import hf_config


def hf_model(vision=None, text=None, seed=0, assign_gain=100.0):
    """A randomly initialised HF GroupViTModel in eval mode, made decisive.

    HF's random init makes the group assignments near-ties (gaps ~1e-8), so two
    frameworks may pick different argmax groups by rounding alone. Scaling the
    assignment query weights by `assign_gain` makes the logits spread out, so an
    agreement on the hard assignment means the computations agree. BatchNorm
    running statistics are randomised so evaluation-mode BN is not the identity.
    """
    torch.manual_seed(seed)
    config = transformers.GroupViTConfig(vision_config=vision or {}, text_config=text or {})
    model = transformers.GroupViTModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".assign.q_proj.weight" in name:
                p.mul_(assign_gain)
        for head in (model.visual_projection, model.text_projection):
            bn = head[1]
            bn.running_mean.normal_(0, 0.1)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.1)
    return model


def numpy_state(model) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def convert(model):
    """HF model -> (our config, our variables)."""
    cfg = hf_config(model.config.to_dict())
    return cfg, torch_layout.from_torch(numpy_state(model), cfg, torch_layout.HF)


def hf_outputs(model, images_nhwc: np.ndarray, tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Everything we compare, computed by the HF model."""
    pixels = torch.from_numpy(images_nhwc.transpose(0, 3, 1, 2).copy())
    ids = torch.from_numpy(tokens.astype(np.int64))
    with torch.no_grad():
        vis = model.vision_model(pixels, output_attentions=True, return_dict=True)
        txt = model.text_model(ids, return_dict=True)
        image_embeds = model.visual_projection(vis.pooler_output)
        text_embeds = model.text_projection(txt.pooler_output)
        seg = vis.last_hidden_state
        segment_embeds = model.visual_projection(seg.reshape(-1, seg.shape[-1])).reshape(
            seg.shape[0], seg.shape[1], -1)
        out = model(input_ids=ids, pixel_values=pixels)
    return {
        "image_embeds": image_embeds.numpy(),
        "text_embeds": text_embeds.numpy(),
        "segment_embeds": segment_embeds.numpy(),
        "logits_per_image": out.logits_per_image.numpy(),
        "soft_maps": [a.numpy() for a in vis.attentions],
    }
