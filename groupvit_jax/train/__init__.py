"""The trainer: recipe, batches, sharding, losses, optimizer, train state and step,
checkpoints, export of a training run. `python -m groupvit_jax.train` runs it."""
