"""Loading a Python config file of configs/ (not a package) the way --config does."""
from __future__ import annotations

import importlib.util
from pathlib import Path


def load_config(path: str | Path, arg: str | None = None):
    """get_config(arg) of the config file at `path`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)
