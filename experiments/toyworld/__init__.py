"""The toy world project: a generated image-caption world, its config, the main job
(`make run`), ablations over seeds, and their recorded results."""
