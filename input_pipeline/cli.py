"""How every `python -m` binary of the project takes flags and reports failures.

One convention, absl flags (as google-research/big_vision and the flax examples):
`--name=value` or `--name value`, booleans as `--name`/`--noname`, lists comma-separated
(`--seeds=0,1,2`), `--flagfile=FILE`, `--help`. There are no positional arguments. Each
binary defines its flags on its own `flags.FlagValues()` (never the global `flags.FLAGS`),
so any number of binaries can be imported and run in one process, and has

    def define_flags(fv: flags.FlagValues) -> None: ...   # flags.DEFINE_*(..., flag_values=fv)
    def _run(args: flags.FlagValues) -> int: ...           # the work; args.name is a flag

    main = cli.binary(define_flags, _run)  # main(argv) -> int, argv[0] the program name

    if __name__ == "__main__":
        cli.run_main(main)                 # absl's app.run: absl logging, exit code

Exit codes, the same in every binary:

    0  success
    1  an unexpected internal error (a bug): the Python traceback is printed
    2  a usage error: an unknown flag, a required flag missing, a flag value that is
       malformed or out of range, a positional argument. One line on stderr:
       `error: --flag: reason`, or absl's `error: flag --flag=VALUE: reason`
    3  bad input data, or a file or folder that cannot be read or written: missing,
       already there (no --overwrite), permission denied, a file where a folder is
       expected or the reverse, invalid JSON, a dataset or checkpoint of the wrong
       layout (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
       NotADirectoryError and other OSErrors; ValueError, json.JSONDecodeError
       included). One line on stderr: `error: PATH: reason`

`run` maps the exceptions to the codes; a flag value that only the work itself finds
wrong is a `UsageError` (a ValueError, so library callers can catch ValueError).

Every path a flag names goes through input_pipeline/paths.py: local or gs://, never
rewritten. This module is imported by groupvit_jax and experiments too; of the project it
imports only paths.py (input_pipeline never imports groupvit_jax).
"""
from __future__ import annotations

import contextvars
import errno
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from absl import app, flags
from etils import epath

from input_pipeline import paths

OK = 0
INTERNAL_ERROR = 1
USAGE_ERROR = 2
DATA_ERROR = 3

HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull")
_ARGV: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("argv", default=None)
_REQUIRED = re.compile(r"flag --([\w.]+)=None: Flag --\1 must have a value other than None\.")


class UsageError(ValueError):
    """A flag value that is wrong (exit code 2); the message starts with the flag's name."""


def binary(define_flags: Callable[[flags.FlagValues], Any],
           body: Callable[[flags.FlagValues], int | None],
           data_errors: tuple[type[BaseException], ...] = ()) -> Callable[[Sequence[str]], int]:
    """The `main(argv) -> int` of a binary: `run(argv, define_flags, body, data_errors)`."""
    def main(argv: Sequence[str]) -> int:
        return run(argv, define_flags, body, data_errors)
    main.__module__, main.__doc__ = body.__module__, sys.modules[body.__module__].__doc__
    return main


def run(argv: Sequence[str], define_flags: Callable[[flags.FlagValues], Any],
        body: Callable[[flags.FlagValues], int | None],
        data_errors: tuple[type[BaseException], ...] = ()) -> int:
    """Parses argv into a fresh FlagValues that `define_flags` fills, runs `body` on it
    and returns the exit code: body's (None is 0), or the one of a failure (module doc).

    Besides OSError and ValueError, `data_errors` are exceptions this binary raises for
    bad input (exit code 3). Any other exception propagates: a traceback, exit code 1.
    """
    argv = [str(a) for a in argv]
    if not argv or argv[0].startswith("-"):
        raise TypeError(f"argv must start with the program name, as sys.argv; got {argv[:1]}")
    flag_values = flags.FlagValues()
    token = _ARGV.set(argv)  # for define_config_file
    try:
        define_flags(flag_values)
    finally:
        _ARGV.reset(token)
    if any(a in HELP_FLAGS for a in argv[1:]):
        doc = sys.modules[body.__module__].__doc__ or ""
        print(f"{doc.strip()}\n\nFlags:\n{flag_values.get_help()}")
        return OK
    try:
        rest = flag_values(argv)
    except flags.Error as e:
        # absl's "flag --x=None: Flag --x must have a value other than None." -> "--x: required"
        message = _REQUIRED.sub(r"--\1: required", _one_line(e))
        return fail(USAGE_ERROR, f"{message} (see --help)")
    except (AttributeError, KeyError) as e:  # ml_collections: --config.KEY that is not there
        while e.args and isinstance(e.args[0], (AttributeError, KeyError)):
            e = e.args[0]  # its KeyError's message, inside an AttributeError
        detail = _one_line(ValueError(*e.args[:1]))
        return fail(USAGE_ERROR, f"a --config override names no key of the config: {detail} "
                                 "(see --help)")
    if len(rest) > 1:
        return fail(USAGE_ERROR, f"unexpected argument {rest[1]!r}: every value is given "
                                 "as --flag=value (see --help)")
    try:
        code = body(flag_values)
    except UsageError as e:
        return fail(USAGE_ERROR, _one_line(e))
    except (OSError, ValueError, *data_errors) as e:
        return fail(DATA_ERROR, describe(e))
    return OK if code is None else int(code)


def run_main(main: Callable[[list[str]], int]) -> None:
    """`sys.exit(main(sys.argv))` under absl's app.run (absl logging set up, INFO on
    stderr, as for any absl program); absl's own flags (--verbosity...) keep defaults.
    SIGTERM raises SystemExit(143), so the binary's cleanup (`finally`) runs."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    app.run(main, flags_parser=_absl_defaults)


def _exit_on_sigterm(signum, frame):
    del frame  # the signal handler's signature
    raise SystemExit(128 + signum)


def _absl_defaults(argv: list[str]) -> list[str]:
    flags.FLAGS(argv[:1])
    return argv


def fail(code: int, message: str) -> int:
    """Prints `error: message` on stderr and returns `code`."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


def describe(error: BaseException) -> str:
    """One line for a failure: its message, or `PATH: reason` for an OSError of the OS
    (also one a library re-raised as an OSError without the file's name)."""
    seen = error
    while isinstance(seen, OSError):
        if seen.filename is not None and seen.strerror:
            if seen.filename2 is not None:
                return f"{seen.filename} -> {seen.filename2}: {seen.strerror}"
            return f"{seen.filename}: {seen.strerror}"
        seen = seen.__cause__
    return _one_line(error)


def _one_line(error: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return text or type(error).__name__


def path_flag(flag_values: flags.FlagValues, name: str) -> epath.Path | None:
    """The path flag --name gives (local or gs://; None when unset); a scheme no file
    system here handles, or a gs:// URL whose '//' was lost, is a UsageError naming it."""
    value = flag_values[name].value
    if value is None:
        return None
    try:
        return paths.as_path(value)
    except ValueError as e:
        raise UsageError(f"--{name}: {e}") from None


def read_json(path: str | os.PathLike) -> Any:
    """The JSON document in `path` (local or gs://); invalid JSON is a ValueError naming
    the file."""
    path = paths.as_path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def check_writable(path: str | os.PathLike, folder: bool) -> epath.Path:
    """`path` if a binary may write it (a folder, or a file when not `folder`), checked
    before any long work: a file where a folder is expected or the reverse, or no
    permission, is the OSError naming it that writing would raise at the end. In a bucket
    only the first is checked: its permissions show when writing."""
    path = paths.as_path(path)
    if path.exists() and path.is_dir() != folder:
        if folder:
            raise NotADirectoryError(errno.ENOTDIR, "a file, a folder is expected", str(path))
        raise IsADirectoryError(errno.EISDIR, "a folder, a file is expected", str(path))
    if paths.is_remote(path):
        return path
    parent = path if path.is_dir() else path.parent
    while not parent.exists():  # the folders to be made go under the nearest existing one
        parent = parent.parent
    if not parent.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{parent} is a file, not a folder", str(path))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "Permission denied", str(parent))
    return path


def write_json(document: Any, path: str | os.PathLike, **dumps_kwargs) -> epath.Path:
    """Writes `document` as indented JSON to `path` (local or gs://; folders made) and says
    so on stdout."""
    path = paths.as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, **dumps_kwargs) + "\n")
    print(f"wrote {path}")
    return path


def define_config_file(flag_values: flags.FlagValues, default: str | None = None,
                       help_string: str = "Python config file[:variant]") -> None:
    """--config=FILE.py[:ARG] with --config.x.y=value overrides (ml_collections), required
    without a default. Read the config with `config_value`."""
    from ml_collections import config_flags  # only the binaries with a config file need it

    # The overrides are looked up in the argv being parsed (ml_collections: sys.argv).
    config_flags.DEFINE_config_file("config", default, help_string, flag_values=flag_values,
                                    lock_config=True, sys_argv=_ARGV.get())
    if default is None:
        flags.mark_flag_as_required("config", flag_values=flag_values)


def config_value(flag_values: flags.FlagValues) -> Any:
    """The ConfigDict of define_config_file's --config (loaded now, overrides applied); a
    config file that does not exist is a FileNotFoundError naming it."""
    from ml_collections import config_flags

    path = config_flags.get_config_filename(flag_values["config"]).split(":", 1)[0]  # FILE[:ARG]
    if not Path(path).is_file():
        raise FileNotFoundError(errno.ENOENT, "no such config file", path)
    return flag_values.config


def define_jax_distributed(flag_values: flags.FlagValues) -> None:
    """--jax_distributed: the binary calls jax.distributed.initialize() (multi-host)."""
    flags.DEFINE_bool("jax_distributed", False, "call jax.distributed.initialize() first "
                      "(multi-host). Without it the binary still does where the environment "
                      "names several processes: JAX_NUM_PROCESSES > 1 (with "
                      "JAX_COORDINATOR_ADDRESS, JAX_PROCESS_ID), a multi-task SLURM step, a "
                      "TPU pod's TPU_WORKER_HOSTNAMES; run the same command on every host",
                      flag_values=flag_values)
