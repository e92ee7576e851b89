"""GroupViT in JAX/Flax: grouping image tower, CLIP text tower, released-weight import."""
from groupvit_jax.config import GroupViTConfig, TextConfig, VisionConfig
from groupvit_jax.model import GroupViT
from groupvit_jax.pretrained import PretrainedGroupViT, export, load_pretrained

__all__ = ["GroupViT", "GroupViTConfig", "PretrainedGroupViT", "TextConfig", "VisionConfig",
           "export", "load_pretrained"]
