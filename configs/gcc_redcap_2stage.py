"""The released `gcc_redcap` GroupViT: 2 stages, CC3M + CC12M + RedCaps12M, no multi-label loss.

Run:
    python -m groupvit_jax.train --config=configs/gcc_redcap_2stage.py --workdir=/ckpt/gcc_redcap
    python -m groupvit_jax.train --config=configs/gcc_redcap_2stage.py:gpu1 --workdir=/ckpt/gcc_redcap_2stage_gpu1
    python -m groupvit_jax.train --config=configs/gcc_redcap_2stage.py:runlocal --workdir=/tmp/gv

Expected (released checkpoint): zero-shot mIoU VOC 50.8, PASCAL Context 23.7,
COCO-Object 27.5; ImageNet top-1 51.6.
"""
from groupvit_jax.models.config import GroupViTConfig
from groupvit_jax.train.recipe import apply_variant, recipe


def get_config(arg=None):
    config = recipe(GroupViTConfig(), num_prompts=0, examples_per_epoch=27_000_000,
                    datasets={"gcc3m": 1.0, "gcc12m": 1.0, "redcap12m": 1.0})
    return apply_variant(config, arg)
