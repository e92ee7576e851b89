"""The released `gcc_yfcc` GroupViT: 2 stages, CC3M + CC12M + YFCC14M, K=3 prompts.

Run (any host count; every host runs the same command):
    python -m groupvit_jax.train --config=configs/gcc_yfcc_2stage.py --workdir=/ckpt/gcc_yfcc
    python -m groupvit_jax.train --config=configs/gcc_yfcc_2stage.py:gpu1 --workdir=/ckpt/gcc_yfcc_2stage_gpu1
    python -m groupvit_jax.train --config=configs/gcc_yfcc_2stage.py:runlocal --workdir=/tmp/gv

Expected (released checkpoint, 30 epochs at global batch 4096): zero-shot mIoU
VOC 52.3, PASCAL Context 22.4, COCO-Object 24.3; ImageNet top-1 43.7.
`:gpu1` is the same run on one GPU (gradient caching over 16 micro-batches, bf16).
`:runlocal` trains a tiny model 30 steps on CPU; the loss falls by over 20%.
"""
from groupvit_jax.models.config import GroupViTConfig
from groupvit_jax.train.recipe import apply_variant, recipe


def get_config(arg=None):
    config = recipe(GroupViTConfig(), num_prompts=3, examples_per_epoch=28_660_000,
                    datasets={"gcc3m": 1.0, "gcc12m": 1.0, "yfcc14m": 1.0})
    return apply_variant(config, arg)
