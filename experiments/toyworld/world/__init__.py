"""The toy world: procedurally generated image-caption scenes with exact masks.

scenes.py draws scenes, captions.py describes them, generate.py writes them as a
training dataset (through input_pipeline.convert) and as a folder-layout
segmentation set for `python -m groupvit_jax.evaluation.eval_seg --dataset folder`.
"""
