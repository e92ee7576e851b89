"""Loading the Python config files of configs/ the way the binaries' --config flag does."""
from pathlib import Path

from groupvit_jax.train.config_files import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").glob("*.py"))


__all__ = ["CONFIGS", "ROOT", "load_config"]
