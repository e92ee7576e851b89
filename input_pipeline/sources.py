"""What the converter reads: image-caption pairs from three kinds of input.

    webdataset  tar shards as img2dataset writes them: the members of one example share a
                key (the member path up to the first dot of its file name); the image is
                its .jpg/.jpeg/.png/.webp, the caption its .txt, else its .json "caption"
    csv         CSV/TSV files with a header naming an image-path and a caption column;
                relative paths resolve against the CSV's folder
    folder      folders searched recursively for images with a same-name .txt caption

The inputs are cut into work units (one tar, or a run of listed rows) that the converter
processes in parallel; a unit's index fixes where its examples go in the output.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import glob
import json
import os
import tarfile
from pathlib import Path
from typing import Iterator

FORMATS = ("webdataset", "csv", "folder")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
IMAGE_COLUMNS = ("image", "image_path", "filepath", "file_path", "path", "file", "filename")
CAPTION_COLUMNS = ("caption", "text", "txt", "title", "sentence", "description")


@dataclasses.dataclass(frozen=True)
class RawExample:
    """One example as read; `problem` names why it cannot be used, when that is known
    before decoding the image."""
    key: str
    image: bytes | None
    caption: str | None
    problem: str | None = None


@dataclasses.dataclass(frozen=True)
class ListedExample:
    """A CSV row (caption given) or a folder's image (caption read from caption_path)."""
    key: str
    image_path: str | None
    caption: str | None = None
    caption_path: str | None = None


@dataclasses.dataclass(frozen=True)
class WorkUnit:
    index: int
    input_name: str  # the id prefix: the input's path relative to all inputs' common folder
    input_path: str  # the input file or folder, as the skip report names it
    tar: str | None = None
    listed: tuple[ListedExample, ...] = ()

    def read(self) -> Iterator[RawExample]:
        return read_tar(self.tar) if self.tar else read_listed(self.listed)


def expand_inputs(patterns: list[str], fmt: str) -> list[Path]:
    """Paths and globs -> the inputs in the order given (a glob's matches sorted), each
    once: files, or folders for 'folder'."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown input format {fmt!r}; expected one of {FORMATS}")
    if not patterns:
        raise ValueError("no inputs given")
    found: dict[str, Path] = {}
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True))
        if not matches:
            raise FileNotFoundError(f"{pattern}: no such file (or no match for the glob)")
        for match in matches:
            path = Path(match).resolve()
            if (fmt == "folder") != path.is_dir():
                wanted = "a folder" if fmt == "folder" else "a file"
                raise ValueError(f"{match}: format {fmt!r} takes {wanted} here")
            found.setdefault(str(path), path)
    return list(found.values())


def input_names(paths: list[Path]) -> list[str]:
    """Each input's path relative to the inputs' common folder (its name when alone):
    the part of the example ids that stays the same wherever the data moves."""
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return [p.relative_to(root).as_posix() for p in paths]


def plan(fmt: str, paths: list[Path], rows_per_unit: int, image_column: str | None = None,
         caption_column: str | None = None) -> tuple[int, Iterator[WorkUnit]]:
    """(number of work units, the units in order). Rows are listed lazily so that a CSV of
    millions of rows is never held in memory; counting them first is a quick extra pass."""
    names = input_names(paths)
    if fmt == "webdataset":
        units = [WorkUnit(i, name, str(p), tar=str(p))
                 for i, (name, p) in enumerate(zip(names, paths))]
        return len(units), iter(units)
    if fmt == "folder":
        rows_of = list_folder
    else:
        rows_of = functools.partial(read_csv, image_column=image_column,
                                    caption_column=caption_column)
    num_units = sum(-(-sum(1 for _ in rows_of(p)) // rows_per_unit) for p in paths)
    chunks = ((name, p, chunk) for name, p in zip(names, paths)
              for chunk in _chunks(rows_of(p), rows_per_unit))
    return num_units, (WorkUnit(i, name, str(p), listed=tuple(chunk))
                       for i, (name, p, chunk) in enumerate(chunks))


def _chunks(items, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def read_tar(path: str) -> Iterator[RawExample]:
    """The examples of a webdataset tar, grouping consecutive members by key as webdataset
    does; a key seen again later is reported as a duplicate, not merged."""
    seen: set[str] = set()
    key, members = None, {}
    try:
        with tarfile.open(path, "r|*") as tar:  # streamed: tars can be many GB
            for member in tar:
                if not member.isfile():
                    continue
                folder, _, file_name = member.name.rpartition("/")
                stem, _, extension = file_name.partition(".")
                member_key = f"{folder}/{stem}" if folder else stem
                if member_key != key:
                    if key is not None:
                        yield _tar_example(key, members, seen)
                    key, members = member_key, {}
                members[extension.lower()] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{path}: unreadable tar ({e}); re-download it or leave it out "
                         "of the inputs") from e
    if key is not None:
        yield _tar_example(key, members, seen)


def _tar_example(key: str, members: dict[str, bytes], seen: set[str]) -> RawExample:
    if key in seen:
        return RawExample(key, None, None, "duplicate_key")
    seen.add(key)
    image = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
    if image is None:
        return RawExample(key, None, None, "missing_image")
    if "txt" in members:
        return _decoded_caption(key, image, members["txt"])
    if "json" in members:
        try:
            caption = json.loads(members["json"]).get("caption")
        except (ValueError, AttributeError):
            return RawExample(key, image, None, "undecodable_caption")
        return RawExample(key, image, caption if isinstance(caption, str) else None)
    return RawExample(key, image, None)


def _decoded_caption(key: str, image: bytes, caption: bytes) -> RawExample:
    try:
        return RawExample(key, image, caption.decode("utf-8"))
    except UnicodeDecodeError:
        return RawExample(key, image, None, "undecodable_caption")


def read_listed(listed: tuple[ListedExample, ...]) -> Iterator[RawExample]:
    for row in listed:
        if row.image_path is None or not os.path.isfile(row.image_path):
            yield RawExample(row.key, None, row.caption, "missing_image")
            continue
        image = Path(row.image_path).read_bytes()
        if row.caption_path is None:
            yield RawExample(row.key, image, row.caption)
        elif not os.path.isfile(row.caption_path):
            yield RawExample(row.key, image, None)
        else:
            yield _decoded_caption(row.key, image, Path(row.caption_path).read_bytes())


def list_folder(folder: Path) -> list[ListedExample]:
    """Every image under `folder` with its same-name .txt, and every .txt without an
    image, keyed by path relative to the folder, sorted."""
    images, captions = {}, set()
    for directory, subdirs, files in os.walk(folder):
        subdirs.sort()
        for file_name in files:
            path = Path(directory, file_name)
            extension = path.suffix.lower().lstrip(".")
            if extension in IMAGE_EXTENSIONS:
                images[path] = path.with_suffix(".txt")
            elif extension == "txt":
                captions.add(path)
    orphans = captions - set(images.values())
    rows = [ListedExample(p.relative_to(folder).as_posix(), str(p), caption_path=str(c))
            for p, c in images.items()]
    rows += [ListedExample(c.relative_to(folder).as_posix(), None, caption_path=str(c))
             for c in orphans]
    return sorted(rows, key=lambda row: row.key)


def read_csv(path: Path, image_column: str | None = None,
             caption_column: str | None = None) -> Iterator[ListedExample]:
    """The rows of a CSV/TSV file, keyed by data-row index (0 = first row after the header)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, **_dialect(path, f))
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file; expected a header row")
        image_at = _column(path, header, image_column, IMAGE_COLUMNS, "--image_column")
        caption_at = _column(path, header, caption_column, CAPTION_COLUMNS, "--caption_column")
        for index, row in enumerate(reader):
            image = row[image_at].strip() if image_at < len(row) else ""
            caption = row[caption_at] if caption_at < len(row) else None
            image_path = str(path.parent / image) if image else None
            yield ListedExample(str(index), image_path, caption)


def _dialect(path: Path, f) -> dict:
    extension = path.suffix.lower()
    if extension in (".tsv", ".tab"):
        # Tab-separated captions are not quoted: a caption starting with '"' is literal.
        return {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    if extension == ".csv":
        return {"delimiter": ","}
    sample = f.read(1 << 16)
    f.seek(0)
    try:
        return {"dialect": csv.Sniffer().sniff(sample, delimiters=",\t;|")}
    except csv.Error as e:
        raise ValueError(f"{path}: cannot tell the delimiter ({e}); name the file "
                         ".csv or .tsv") from e


def _column(path: Path, header: list[str], chosen: str | None, candidates: tuple[str, ...],
            flag: str) -> int:
    names = [h.strip() for h in header]
    if chosen is not None:
        if chosen not in names:
            raise ValueError(f"{path}: no column {chosen!r} ({flag}); the header is {names}")
        return names.index(chosen)
    lowered = [n.lower() for n in names]
    for candidate in candidates:
        if candidate in lowered:
            return lowered.index(candidate)
    raise ValueError(f"{path}: none of the columns {names} is one of {list(candidates)}; "
                     f"name the right one with {flag}")
