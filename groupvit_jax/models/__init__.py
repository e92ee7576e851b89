"""The GroupViT towers: architecture config, layers, grouping blocks, image and text
towers, and the two-tower model with its projection heads."""
