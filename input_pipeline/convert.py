"""Converts image-caption data once into a TFDS dataset the training pipeline reads.

    python -m input_pipeline.convert --input 'cc3m/*.tar' --format webdataset --out data/gcc3m
    python -m input_pipeline.convert --input pairs.tsv --format csv --out data/mine --workers 8

The output opens with `tfds.builder_from_directory(out)` (input_pipeline.records).
Every image is decoded once to check it (and re-encoded only when resized, or when it is
neither JPEG nor PNG); the nouns are extracted here so training need not. Unusable
examples are skipped, counted in the manifest and listed in skipped.jsonl. The output
does not depend on --workers: work unit u (one input tar, or a run of --examples_per_shard
rows) fills shards in order, so shard k always holds the same examples in the same order.
The dataset is built in a hidden sibling folder and renamed into place when complete.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import functools
import glob
import io
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable

from absl import flags
from etils import epath
from PIL import Image

from input_pipeline import cli, nouns, paths, records, sources

SHARD_PREFIX = "train"
REPORT = "skipped.jsonl"
SKIP_REASONS = ("undecodable", "empty_caption", "missing_caption", "missing_image",
                "undecodable_caption", "duplicate_key")
JPEG_QUALITY = 95
UPLOAD_CHUNK = 16 << 20  # bytes per write when uploading to a bucket


class UndecodableImage(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Options:
    examples_per_shard: int
    resize_short_side: int | None
    tagger: str | None


@dataclasses.dataclass(frozen=True)
class UnitResult:
    index: int
    parts: list[tuple[str, int]]   # (part file in the build folder, examples)
    skipped: dict[str, int]        # reason -> count
    report: str                    # this unit's skip-report part


def decode_image(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # decodes every pixel: Image.verify lets truncated JPEGs through
    except Image.UnidentifiedImageError as e:
        # Its message names a memory address: the report would differ between runs.
        raise UndecodableImage("not an image format PIL knows") from e
    except Exception as e:  # noqa: BLE001 - PIL raises many types on corrupt data
        raise UndecodableImage(f"{type(e).__name__}: {e}") from e
    return image


def prepare_image(data: bytes, resize_short_side: int | None) -> bytes:
    """The bytes to store: as read, unless the short side exceeds resize_short_side (then
    resized to it, keeping the aspect ratio) or the format is neither JPEG nor PNG (which
    the training reader decodes); both re-encode as JPEG."""
    image = decode_image(data)
    width, height = image.size
    short = resize_short_side
    if short and min(width, height) > short:
        if width <= height:
            size = (short, round(height * short / width))
        else:
            size = (round(width * short / height), short)
        return _jpeg(image.convert("RGB").resize(size, Image.Resampling.BICUBIC))
    if image.format in ("JPEG", "PNG"):
        return data
    return _jpeg(image.convert("RGB"))


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


class _Skip(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


class _PartWriter:
    """Writes records to part files of at most `limit` records each, named after the work
    unit so that their order is the units' order whichever worker wrote them."""

    def __init__(self, folder: str, unit_index: int, limit: int):
        self.folder, self.unit_index, self.limit = folder, unit_index, limit
        self.parts: list[tuple[str, int]] = []
        self._writer = None

    def write(self, record: bytes) -> None:
        if self._writer is None or self.parts[-1][1] == self.limit:
            import tensorflow as tf  # here: only the processes that write load it
            self.close()
            name = f"part-{self.unit_index:06d}-{len(self.parts):05d}.tfrecord"
            self.parts.append((name, 0))
            self._writer = tf.io.TFRecordWriter(str(Path(self.folder, name)))
        self._writer.write(record)
        self.parts[-1] = (self.parts[-1][0], self.parts[-1][1] + 1)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def convert_unit(unit: sources.WorkUnit, build_dir: str, options: Options) -> UnitResult:
    """Writes one work unit's usable examples to part files and its skipped ones to a
    report part."""
    writer = _PartWriter(build_dir, unit.index, options.examples_per_shard)
    skipped: collections.Counter = collections.Counter()
    report = f"skipped-{unit.index:06d}.jsonl"
    with open(Path(build_dir, report), "w") as report_file:
        for example in unit.read():
            example_id = f"{unit.input_name}/{example.key}"
            try:
                image, caption = _usable(example, options.resize_short_side)
            except _Skip as skip:
                skipped[skip.reason] += 1
                report_file.write(json.dumps({"id": example_id, "input": unit.input_path,
                                              "reason": skip.reason, "detail": skip.detail},
                                             ensure_ascii=False) + "\n")
                continue
            words = nouns.extract_nouns(caption, options.tagger) if options.tagger else []
            writer.write(records.encode_example(example_id, image, caption, words))
    writer.close()
    return UnitResult(unit.index, writer.parts, dict(skipped), report)


def _usable(example: sources.RawExample, resize_short_side: int | None) -> tuple[bytes, str]:
    """(image bytes to store, stripped caption), or _Skip saying why not. The caption is
    checked first: it is cheap and spares decoding images that would be dropped anyway."""
    if example.problem:
        raise _Skip(example.problem)
    if example.caption is None:
        raise _Skip("missing_caption")
    caption = example.caption.strip()
    if not caption:
        raise _Skip("empty_caption")
    try:
        return prepare_image(example.image, resize_short_side), caption
    except UndecodableImage as e:
        raise _Skip("undecodable", str(e)) from e


class _Progress:
    """Examples done, examples/s and the ETA on stderr, at most every few seconds."""

    def __init__(self, num_units: int, enabled: bool, every_s: float = 5.0):
        self.num_units, self.enabled, self.every_s = num_units, enabled, every_s
        self.start = self.last = time.monotonic()
        self.units = self.examples = self.skipped = 0

    def update(self, result: UnitResult) -> None:
        self.units += 1
        self.skipped += sum(result.skipped.values())
        self.examples += sum(n for _, n in result.parts) + sum(result.skipped.values())
        now = time.monotonic()
        if self.enabled and (now - self.last >= self.every_s or self.units == self.num_units):
            self.last = now
            elapsed = now - self.start
            eta = elapsed / self.units * (self.num_units - self.units)
            print(f"convert: {self.units}/{self.num_units} units, {self.examples} examples "
                  f"({self.skipped} skipped), {self.examples / max(elapsed, 1e-9):.1f} "
                  f"examples/s, ETA {datetime.timedelta(seconds=round(eta))}",
                  file=sys.stderr, flush=True)


def _run_units(units: Iterable[sources.WorkUnit], num_units: int, build_dir: Path,
               options: Options, workers: int, progress: bool) -> list[UnitResult]:
    work = functools.partial(convert_unit, build_dir=str(build_dir), options=options)
    meter = _Progress(num_units, progress)
    results = []
    with contextlib.ExitStack() as stack:
        if workers == 1:
            done = map(work, units)
        else:
            # spawn, not fork: TensorFlow's threads do not survive a fork.
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))
            done = pool.imap_unordered(work, units)
        for result in done:
            meter.update(result)
            results.append(result)
    return sorted(results, key=lambda r: r.index)


def _assemble(build_dir: Path, results: list[UnitResult]) -> tuple[list[dict], dict]:
    """Renames the part files to their final shard names and joins the report parts."""
    parts = [part for result in results for part in result.parts]
    shards = []
    for index, (part, count) in enumerate(parts):
        name = records.shard_name(SHARD_PREFIX, index, len(parts))
        (build_dir / part).rename(build_dir / name)
        shards.append({"file": name, "num_examples": count,
                       "bytes": (build_dir / name).stat().st_size})
    skipped = {reason: 0 for reason in SKIP_REASONS}
    with open(build_dir / REPORT, "w") as report:
        for result in results:
            part = build_dir / result.report
            report.write(part.read_text())
            part.unlink()
            for reason, count in result.skipped.items():
                skipped[reason] += count
    return shards, skipped


def _is_converted_dataset(folder: os.PathLike) -> bool:
    try:
        manifest = json.loads((folder / records.MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == records.FORMAT


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _check_destination(out_dir: Path, overwrite: bool, inputs: Iterable[Path] = ()) -> None:
    """--overwrite replaces only what this converter wrote: an empty folder or a converted
    dataset (its manifest says so), never a folder that holds or lies inside an input."""
    for path in inputs:
        if _overlaps(out_dir.resolve(), Path(path).resolve()):
            raise FileExistsError(f"{out_dir}: the output overlaps the input {path}; choose an "
                                  "--out outside the inputs")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir}: exists and is not a folder")
    _check_replaceable(out_dir, overwrite)


def _check_replaceable(out_dir: os.PathLike, overwrite: bool) -> None:
    """Nothing there, or (with overwrite) a dataset this converter wrote."""
    if not out_dir.is_dir() or not any(out_dir.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"{out_dir}: exists and is not empty; pass --overwrite "
                              "(overwrite=True) to replace it")
    if not _is_converted_dataset(out_dir):
        raise FileExistsError(f"{out_dir}: --overwrite replaces only a dataset this converter "
                              f"wrote (with its {records.MANIFEST}), and this folder is not one;"
                              " delete it yourself or choose another --out")


def _sibling(out_dir: Path, purpose: str, pid: int | None = None) -> Path:
    """A hidden folder beside out_dir, unique to this process, that no reader mistakes for
    a dataset (it has no manifest until it is renamed to out_dir)."""
    return out_dir.with_name(f".{out_dir.name}.{purpose}-{pid or os.getpid()}")


def _remove_abandoned_builds(out_dir: Path) -> None:
    """Deletes the build folders of conversions into out_dir whose process is gone (killed
    or crashed), so a rerun starts clean."""
    for folder in out_dir.parent.glob(f".{glob.escape(out_dir.name)}.building-*"):
        pid = folder.name.rsplit("-", 1)[1]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _move_into_place(build_dir: Path, out_dir: Path, overwrite: bool) -> None:
    """Renames the finished build over out_dir; an old dataset is moved aside first and
    deleted only once the new one is in place."""
    _check_destination(out_dir, overwrite)  # again: out_dir may have changed meanwhile
    if not out_dir.exists():
        build_dir.rename(out_dir)
        return
    if not any(out_dir.iterdir()):
        out_dir.rmdir()
        build_dir.rename(out_dir)
        return
    old = _sibling(out_dir, "replaced")
    out_dir.rename(old)
    build_dir.rename(out_dir)
    shutil.rmtree(old)


def convert_dataset(inputs: list[str], fmt: str, out_dir: str | os.PathLike, *,
                    name: str | None = None, examples_per_shard: int = 2000,
                    resize_short_side: int | None = None, tagger: str | None = "pattern",
                    workers: int = 1, overwrite: bool = False, progress: bool = True,
                    image_column: str | None = None,
                    caption_column: str | None = None) -> dict:
    """Converts `inputs` (local paths or globs) of format `fmt` into a dataset at out_dir
    (a local folder or gs://) and returns its manifest (as records.read_manifest gives
    it). With workers > 1 the worker processes are spawned: a calling script needs the
    `if __name__ == "__main__":` guard."""
    if paths.is_remote(out_dir):
        return _convert_to_bucket(inputs, fmt, paths.as_path(out_dir), overwrite,
                                  dict(name=name, examples_per_shard=examples_per_shard,
                                       resize_short_side=resize_short_side, tagger=tagger,
                                       workers=workers, progress=progress,
                                       image_column=image_column,
                                       caption_column=caption_column))
    out_dir = Path(out_dir).absolute()
    if examples_per_shard < 1 or workers < 1:
        raise ValueError(f"examples_per_shard ({examples_per_shard}) and workers ({workers}) "
                         "must be positive")
    if resize_short_side is not None and resize_short_side < 1:
        raise ValueError(f"resize_short_side must be positive, got {resize_short_side}")
    input_paths = sources.expand_inputs(list(inputs), fmt)
    _check_destination(out_dir, overwrite, input_paths)
    if tagger is None:
        nouns_info = {"tagger": None, "version": None}
    else:
        nouns_info = nouns.tagger_info(tagger)
        nouns.get_tagger(tagger)  # a missing NLTK resource fails now, not in a worker
    num_units, units = sources.plan(fmt, input_paths, examples_per_shard, image_column,
                                    caption_column)
    options = Options(examples_per_shard, resize_short_side, tagger)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_builds(out_dir)
    build_dir = _sibling(out_dir, "building")
    shutil.rmtree(build_dir, ignore_errors=True)  # left by a crashed run with our pid
    build_dir.mkdir()
    try:
        results = _run_units(units, num_units, build_dir, options, workers, progress)
        shards, skipped = _assemble(build_dir, results)
        if not shards:
            raise ValueError(f"no usable example in {[str(p) for p in input_paths]}; skipped: "
                             f"{ {k: v for k, v in skipped.items() if v} }")
        records.write_tfds_metadata(build_dir, name or out_dir.name,
                                    [s["num_examples"] for s in shards])
        records.write_manifest(build_dir, {
            "format": records.FORMAT,
            "name": name or out_dir.name,
            "num_examples": sum(s["num_examples"] for s in shards),
            "shards": shards,
            "source": {"kind": fmt, "inputs": [str(p) for p in input_paths]},
            "nouns": nouns_info,
            "image": {"resize_short_side": resize_short_side},
            "skipped": {**skipped, "report": REPORT},
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
        })
        _move_into_place(build_dir, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    return records.read_manifest(out_dir)


def _convert_to_bucket(inputs: list[str], fmt: str, out_dir: epath.Path, overwrite: bool,
                       options: dict) -> dict:
    """Builds the dataset in a local temporary folder, then uploads it, manifest last (a
    folder with a manifest is complete). --overwrite replaces only a converted dataset."""
    _check_replaceable(out_dir, overwrite)
    with tempfile.TemporaryDirectory(prefix="groupvit_convert_") as local:
        built = Path(local) / out_dir.name
        convert_dataset(inputs, fmt, built, **options)
        if out_dir.is_dir():
            (out_dir / records.MANIFEST).unlink(missing_ok=True)  # incomplete from now on
            for old in out_dir.iterdir():
                old.unlink()
        out_dir.mkdir(parents=True, exist_ok=True)
        files = sorted(built.iterdir(), key=lambda f: f.name == records.MANIFEST)
        for file in files:
            with file.open("rb") as source, (out_dir / file.name).open("wb") as target:
                shutil.copyfileobj(source, target, UPLOAD_CHUNK)
    return records.read_manifest(out_dir)


def define_flags(fv: flags.FlagValues) -> None:
    flags.DEFINE_multi_string("input", None, "a path or glob (quote it: the converter expands "
                              "it); repeat the flag for more", flag_values=fv, required=True)
    flags.DEFINE_enum("format", None, sources.FORMATS, "the input's format", flag_values=fv,
                      required=True)
    flags.DEFINE_string("out", None, "the dataset folder to create", flag_values=fv,
                        required=True)
    flags.DEFINE_string("name", None, "default: the --out folder's name", flag_values=fv)
    flags.DEFINE_integer("examples_per_shard", 2000, "examples per TFRecord shard",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("resize_short_side", None, "shrink images whose short side is larger "
                         "(img2dataset used 512)", lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("tagger", "pattern", [*nouns.TAGGERS, "none"],
                      "'none': store no nouns; training extracts them online", flag_values=fv)
    flags.DEFINE_integer("workers", 1, "processes", lower_bound=1, flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "replace an existing --out", flag_values=fv)
    flags.DEFINE_string("image_column", None, "CSV: the image-path column", flag_values=fv)
    flags.DEFINE_string("caption_column", None, "CSV: the caption column", flag_values=fv)
    flags.DEFINE_bool("quiet", False, "no progress lines", flag_values=fv)


def _run(args: flags.FlagValues) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads; workers inherit
    manifest = convert_dataset(
        args.input, args.format, args.out, name=args.name,
        examples_per_shard=args.examples_per_shard,
        resize_short_side=args.resize_short_side,
        tagger=None if args.tagger == "none" else args.tagger, workers=args.workers,
        overwrite=args.overwrite, progress=not args.quiet,
        image_column=args.image_column, caption_column=args.caption_column)
    skipped = {k: v for k, v in manifest["skipped"].items() if k != "report" and v}
    print(f"wrote {manifest['num_examples']} examples in {len(manifest['shards'])} shards to "
          f"{args.out}; skipped {skipped or 'none'}")
    return cli.OK


# LookupError: the nltk tagger's data is not installed.
main = cli.binary(define_flags, _run, data_errors=(LookupError,))


if __name__ == "__main__":
    cli.run_main(main)
