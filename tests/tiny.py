"""A tiny GroupViT architecture that compiles in seconds, for behaviour tests."""
from groupvit_jax.models.config import GroupViTConfig, TextConfig, VisionConfig


def tiny_config(**kw) -> GroupViTConfig:
    vision = VisionConfig(**{"image_size": 32, "patch_size": 8, "width": 64, "num_heads": 2,
                             "depths": (1, 1, 1), "num_group_tokens": (8, 4, 0),
                             "num_output_groups": (8, 4), **kw.pop("vision", {})})
    text = TextConfig(vocab_size=100, context_length=16, width=32, num_heads=2, depth=1)
    return GroupViTConfig(vision=vision, text=text, projection_dim=16, projection_hidden=32, **kw)
