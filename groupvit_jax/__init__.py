"""GroupViT in JAX/Flax: grouping image tower, CLIP text tower, released-weight import."""
from groupvit_jax.models.config import GroupViTConfig, TextConfig, VisionConfig
from groupvit_jax.models.model import GroupViT
from groupvit_jax.checkpoints.pretrained import PretrainedGroupViT, export, load_pretrained


def __getattr__(name):
    # `gv.evaluation` without making every `import groupvit_jax` load OpenCV and the
    # evaluators.
    if name == "evaluation":
        import importlib
        return importlib.import_module("groupvit_jax.evaluation")
    raise AttributeError(f"module 'groupvit_jax' has no attribute {name!r}")


__all__ = ["GroupViT", "GroupViTConfig", "PretrainedGroupViT", "TextConfig", "VisionConfig",
           "export", "load_pretrained"]
