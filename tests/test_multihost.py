"""When a binary joins other processes (read from the environment only), and what several
processes (jax.distributed on loopback, joined through JAX_* variables, no flag) do:
score like one, report once, and stop together on a config or data disagreement."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import groupvit_jax as gv
from groupvit_jax.multihost import distributed_args
from tests.tiny_pretrained import tiny_pretrained

ROOT = Path(__file__).resolve().parents[1]
SRUN = {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4",
        "SLURM_STEP_NODELIST": "node[001-004]", "SLURM_PROCID": "2", "SLURM_LOCALID": "0"}
TPU_POD = {"TPU_WORKER_ID": "1", "TPU_WORKER_HOSTNAMES": "t-0,t-1,t-2,t-3"}
CLASSES = ("cat", "dog", "grass", "sky", "car", "tree", "boat")
JAX_VARS = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2",
            "JAX_PROCESS_ID": "1"}


@pytest.mark.parametrize("environ", [
    {},
    {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1", "SLURM_STEP_NUM_TASKS": "1",
     "SLURM_STEP_NODELIST": "node001", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"},
    # An sbatch script or salloc shell: tasks allocated, but this is one process (no srun).
    {"SLURM_JOB_ID": "4242", "SLURM_NTASKS": "4", "SLURM_PROCID": "0"},
    {"TPU_WORKER_ID": "0", "TPU_WORKER_HOSTNAMES": "t-0"},  # a single-host TPU VM
    {"MEGASCALE_NUM_SLICES": "1"},
    {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "1", "JAX_PROCESS_ID": "0"},
], ids=["bare", "srun_one_task", "sbatch_shell", "tpu_one_host", "one_slice", "jax_one"])
def test_a_single_process_does_not_initialize(environ):
    assert distributed_args(False, environ) is None
    assert distributed_args(True, environ) == {}  # the flag: jax detects what it can


@pytest.mark.parametrize("environ", [
    SRUN, TPU_POD, {"TPU_PROCESS_ADDRESSES": "10.0.0.1:8476,10.0.0.2:8476"},
    {"MEGASCALE_NUM_SLICES": "2", "MEGASCALE_SLICE_ID": "1"},
], ids=["srun", "tpu_pod", "tpu_addresses", "multislice"])
def test_a_cluster_initializes_with_jax_detecting_it(environ):
    assert distributed_args(False, environ) == {}


def test_jax_variables_give_every_argument_since_jax_reads_only_the_address():
    expected = {"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}
    assert distributed_args(False, JAX_VARS) == expected
    assert distributed_args(True, {**JAX_VARS, **SRUN}) == expected  # they win over SLURM's


def test_incomplete_or_malformed_jax_variables_are_named():
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES=2 needs JAX_PROCESS_ID set too"):
        distributed_args(False, {**JAX_VARS, "JAX_PROCESS_ID": ""})
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES='two' is not an integer"):
        distributed_args(False, {**JAX_VARS, "JAX_NUM_PROCESSES": "two"})


def _spawn(commands: list[list[str]], cwds: list[Path]) -> list[subprocess.CompletedProcess]:
    """Runs command i as process i of len(commands), joined through the JAX_* variables
    on a free loopback port; returns them once all have exited."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for i, (command, cwd) in enumerate(zip(commands, cwds)):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
               "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
               "JAX_NUM_PROCESSES": str(len(commands)), "JAX_PROCESS_ID": str(i)}
        procs.append(subprocess.Popen([sys.executable, "-m", *command], cwd=cwd, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = []
    for command, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=600)
        done.append(subprocess.CompletedProcess(command, proc.returncode, out, err))
    return done


def _write_images(root: Path, count: int) -> None:
    for i in range(count):
        folder = root / CLASSES[i % len(CLASSES)]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")


@pytest.mark.slow  # three processes load the tiny model (~30 s on 2 cores)
def test_two_hosts_split_classification_and_only_the_first_reports(tmp_path):
    _write_images(tmp_path / "data", 9)  # odd: host 0 scores 5 images, host 1 four
    gv.export(tiny_pretrained(seed=3), tmp_path / "model")
    flags = ["groupvit_jax.evaluation.eval_cls", f"--checkpoint={tmp_path / 'model'}",
             f"--data_dir={tmp_path / 'data'}", "--batch_size=2"]
    two = _spawn([[*flags, f"--out={tmp_path / 'two.json'}"]] * 2, [ROOT] * 2)
    for proc in two:
        assert proc.returncode == 0, proc.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", *flags, f"--out={tmp_path / 'one.json'}"],
                         cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"},
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    keys = ("top1", "top5", "num_images", "num_classes")
    expected = {k: json.loads((tmp_path / "one.json").read_text())[k] for k in keys}
    assert expected["num_images"] == 9 and 0 < expected["top5"] < 100
    two_json = json.loads((tmp_path / "two.json").read_text())
    assert {k: two_json[k] for k in keys} == expected
    assert json.loads((tmp_path / "one.json").read_text())["images_this_host"] == 9
    assert two_json["images_this_host"] == 5  # process 0's share: images 0, 2, 4, 6, 8
    assert "top-1" in two[0].stdout and "wrote" in two[0].stdout
    quiet = two[1].stdout + two[1].stderr  # gloo's connection line aside: no report, no progress
    assert not [w for w in ("classes from", "top-1", "wrote", "images/s") if w in quiet]


@pytest.mark.slow  # two processes import the evaluation stack (~5 s)
def test_hosts_reading_different_files_stop_naming_them(tmp_path):
    """The same command on both hosts, but host 1's data folder holds one more image."""
    for host, count in (("a", 7), ("b", 8)):
        _write_images(tmp_path / host / "data", count)
    command = ["groupvit_jax.evaluation.eval_cls", "--checkpoint=model", "--data_dir=data"]
    done = _spawn([command] * 2, [tmp_path / "a", tmp_path / "b"])
    for proc in done:
        assert proc.returncode == 3, proc.stderr[-3000:]
        assert "error: hosts disagree on images, labels: processes [1] differ from " \
               "process 0" in proc.stderr


@pytest.mark.slow  # two processes import the trainer (~10 s)
def test_hosts_given_different_configs_both_stop_naming_the_key(tmp_path):
    base = ["groupvit_jax.train", "--config=configs/gcc_yfcc_2stage.py:runlocal",
            f"--workdir={tmp_path / 'work'}"]
    done = _spawn([[*base, "--config.seed=0"], [*base, "--config.seed=1"]], [ROOT] * 2)
    for i, proc in enumerate(done):
        assert proc.returncode == 3, proc.stderr[-3000:]
        assert (f"error: hosts disagree on config.seed: processes [1] differ from process 0 "
                f"(here, process {i}: config.seed={i})") in proc.stderr
    assert not (tmp_path / "work" / "config.json").exists()  # stopped before any work
