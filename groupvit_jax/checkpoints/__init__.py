"""Weights in and out: the released PyTorch layouts (NVlabs `.pth`, Hugging Face),
our export format, `load_pretrained`, and the `convert_weights` binary."""
