"""One path type for every file the project reads or writes, local or in a bucket.

    path = paths.as_path("gs://bucket/run")   # or "runs/x", "/data/voc"
    (path / "config.json").write_text(...)    # the same code for both

`as_path` returns an `etils.epath.Path` (the path type Orbax uses): local paths go to
the OS, `gs://` ones to a Cloud Storage backend (gcsfs when EPATH_USE_TF=false, as the
launch recipes and the tests set; else TensorFlow's tf.io.gfile). A path is never
rewritten: a scheme no backend here handles, or a `gs://` whose `//` pathlib has
already collapsed (`Path("gs://b/x")` is the local `gs:/b/x`), is a ValueError naming
it, never a local folder of that name.

This module is imported by groupvit_jax too; it imports nothing of the project.
"""
from __future__ import annotations

import os
import re
import tempfile

from etils import epath

REMOTE_SCHEMES = ("gs",)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_COLLAPSED = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")


def as_path(path: str | os.PathLike) -> epath.Path:
    """`path` as an epath.Path; an unsupported scheme or a collapsed URL is a ValueError."""
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"a path must be text, got {type(text).__name__} {text!r}")
    scheme = _SCHEME.match(text)
    if scheme and scheme.group(1) not in REMOTE_SCHEMES:
        supported = ", ".join(f"{s}://" for s in REMOTE_SCHEMES)
        raise ValueError(f"{text}: no file system here handles {scheme.group(1)}:// paths "
                         f"(supported: local paths and {supported})")
    collapsed = _COLLAPSED.match(text)
    if collapsed and collapsed.group(1) in REMOTE_SCHEMES:
        raise ValueError(f"{text}: a {collapsed.group(1)}:// URL whose '//' was lost "
                         "(pathlib.Path turns 'gs://b/x' into 'gs:/b/x'); pass it as text")
    return epath.Path(text)


def is_remote(path: str | os.PathLike) -> bool:
    """Whether `path` is in a bucket (not on this host's file system)."""
    return bool(_SCHEME.match(os.fspath(path)))


def absolute(path: str | os.PathLike) -> epath.Path:
    """`as_path(path)`, made absolute when local (epath's own `absolute()` would turn
    `gs://b/x` into the local `$PWD/gs:/b/x`)."""
    path = as_path(path)
    return path if is_remote(path) else path.absolute()


def write_atomically(path: str | os.PathLike, data: bytes) -> epath.Path:
    """Writes `data` to `path` so that it appears whole or not at all: locally through a
    temporary file beside it, renamed over it; in a bucket an object is already so."""
    path = as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_remote(path):
        path.write_bytes(data)
        return path
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
