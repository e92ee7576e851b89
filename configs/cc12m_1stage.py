"""The paper's ablation model: 1-stage GroupViT (64 group tokens -> 8 segments) on CC12M.

Run:
    python -m groupvit_jax.train --config=configs/cc12m_1stage.py --workdir=/ckpt/cc12m_1stage
    python -m groupvit_jax.train --config=configs/cc12m_1stage.py:gpu1 --workdir=/ckpt/cc12m_1stage_gpu1
    python -m groupvit_jax.train --config=configs/cc12m_1stage.py:runlocal --workdir=/tmp/gv

Expected (paper, Table 3, 1-stage on CC12M): PASCAL VOC mask mIoU 39.3, boundary 31.6.
"""
from groupvit_jax.models.config import one_stage
from groupvit_jax.train.recipe import apply_variant, recipe


def get_config(arg=None):
    config = recipe(one_stage(), num_prompts=3, examples_per_epoch=12_000_000,
                    datasets={"gcc12m": 1.0})
    return apply_variant(config, arg)
