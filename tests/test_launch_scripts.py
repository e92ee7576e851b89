"""The launch scripts run what the binaries accept: each script runs with `gcloud` and the
interpreter replaced by stubs that record their arguments, and the recorded training
command goes through the trainer's own flag parser and config loading."""
import importlib
import json
import os
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from input_pipeline import cli

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / "experiments" / "launch"
RECORDER = """#!/usr/bin/env bash
{python} -c 'import json, os, sys; print(json.dumps([os.getcwd(), *sys.argv[1:]]))' "$@" >> {log}
for arg in "$@"; do if [[ -f $arg ]]; then cp "$arg" {folder}/; fi; done
"""


def _stub(folder: Path, name: str) -> Path:
    """An executable `name` in `folder` appending [cwd, *args] as JSON to folder/name.log
    and copying the files it is given into folder."""
    path = folder / name
    path.write_text(RECORDER.format(python=shlex.quote(sys.executable), folder=folder,
                                    log=folder / f"{name}.log"))
    path.chmod(0o755)
    return path


def _calls(folder: Path, name: str) -> list[list[str]]:
    log = folder / f"{name}.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _launch(script: str, args: list[str], stubs: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "LAUNCH_SKIP_SETUP": "1",
           "PYTHON": str(_stub(stubs, "python"))}
    _stub(stubs, "gcloud")
    return subprocess.run(["bash", str(LAUNCH / script), *args], env=env, capture_output=True,
                          text=True, timeout=120)


def _parse(argv: list[str], cwd: Path) -> tuple[int, object]:
    """Exit code of the binary's flag parsing and config loading on `-m MODULE ARGS...`
    run in `cwd` (where its config paths resolve), and the loaded config."""
    assert argv[0] == "-m", argv
    name = argv[1]
    module = importlib.import_module(
        f"{name}.__main__" if importlib.util.find_spec(name).submodule_search_locations
        else name)
    loaded = []
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        code = cli.run([name, *argv[2:]], module.define_flags,
                       lambda args: loaded.append(cli.config_value(args)))
    finally:
        os.chdir(previous)
    return code, loaded[0] if loaded else None


def _worker_command(stubs: Path, home: Path) -> tuple[list[str], Path]:
    """tpu_pod.sh's per-worker command, its shipped code unpacked where the worker would
    (`home`/groupvit_jax): the training command's argv after the interpreter, its cwd."""
    scp, ssh = _calls(stubs, "gcloud")
    assert scp[1:4] == ["compute", "tpus", "tpu-vm"] and scp[4] == "scp"
    assert "--worker=all" in scp and scp[-1] == "gv-v4-64:groupvit_jax.tar.gz"
    assert ssh[4:6] == ["ssh", "gv-v4-64"] and "--worker=all" in ssh
    command = ssh[ssh.index("--command") + 1]
    steps = command.split(" && ")
    assert steps[:4] == ["rm -rf ~/groupvit_jax", "mkdir ~/groupvit_jax",
                         "tar -xzf ~/groupvit_jax.tar.gz -C ~/groupvit_jax", "cd ~/groupvit_jax"]
    with tarfile.open(stubs / "groupvit_jax.tar.gz") as archive:
        archive.extractall(home / "groupvit_jax", filter="data")
    argv = shlex.split(steps[-1])
    assert argv[0] == "~/groupvit_venv/bin/python", argv
    return argv[1:], home / "groupvit_jax"


def test_tpu_pod_runs_the_trainer_with_valid_flags_on_every_worker(tmp_path):
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    done = _launch("tpu_pod.sh", ["gv-v4-64", "us-central2-b", "configs/gcc_yfcc_2stage.py",
                                  "gs://bucket/gcc yfcc", "--config.optim.base_lr=0.002"], stubs)
    assert done.returncode == 0, done.stderr
    argv, cwd = _worker_command(stubs, tmp_path / "home")
    assert argv[:2] == ["-m", "groupvit_jax.train"] and "--jax_distributed" in argv
    code, config = _parse(argv, cwd)
    assert code == cli.OK
    assert config.optim.base_lr == 0.002 and config.data.source == "records"


def test_tpu_pod_ships_setup_unless_skipped(tmp_path):
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
    _stub(stubs, "gcloud")
    done = subprocess.run(["bash", str(LAUNCH / "tpu_pod.sh"), "tpu", "zone",
                           "configs/gcc_yfcc_2stage.py", "gs://b/w"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    command = _calls(stubs, "gcloud")[1][-1]
    assert ("cd ~/groupvit_jax && export EPATH_USE_TF=false && python3 -m venv ~/groupvit_venv && "
            "~/groupvit_venv/bin/pip install -q -e '.[tpu]' && ~/groupvit_venv/bin/python -m "
            "groupvit_jax.train --config=") in command


@pytest.mark.parametrize("script,args,expected", [
    ("gpu_host.sh", ["configs/gcc_yfcc_2stage.py:gpu1", "/ckpt/gv1"], {"grad_accum_steps": 16}),
    ("gpu_host.sh", ["configs/gcc_redcap_2stage.py", "/ckpt/redcap", "--config.seed=3"],
     {"seed": 3}),
    ("cpu_debug.sh", [], {"total_steps": 30}),
    ("cpu_debug.sh", ["/tmp/gv", "--config.total_steps=5"], {"total_steps": 5}),
])
def test_local_scripts_run_the_trainer_with_valid_flags(tmp_path, script, args, expected):
    done = _launch(script, args, tmp_path)
    assert done.returncode == 0, done.stderr
    [[cwd, *argv]] = _calls(tmp_path, "python")
    assert Path(cwd) == ROOT and argv[:2] == ["-m", "groupvit_jax.train"]
    code, config = _parse(argv, ROOT)
    assert code == cli.OK
    assert {key: config[key] for key in expected} == expected


@pytest.mark.parametrize("args,message", [
    (["configs/gcc_yfcc_2stage.py:no_such_variant", "/w"], "Unknown config variant"),
    (["configs/gcc_yfcc_2stage.py", "/w", "--config.optim.base_lrr=1"],
     "a --config override names no key of the config: 'base_lrr'; Did you mean \"base_lr\""),
    (["configs/gcc_yfcc_2stage.py", "/w", "--no_such_flag"],
     "Unknown command line flag 'no_such_flag'"),
], ids=["variant", "config_key", "flag"])
def test_the_check_catches_a_command_the_trainer_refuses(tmp_path, capsys, args, message):
    done = _launch("gpu_host.sh", args, tmp_path)
    assert done.returncode == 0, done.stderr
    [[_, *argv]] = _calls(tmp_path, "python")
    code, config = _parse(argv, ROOT)
    assert (code, config) == (cli.USAGE_ERROR, None)
    assert message in capsys.readouterr().err
