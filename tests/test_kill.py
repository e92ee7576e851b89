"""The trainer binary stopped by SIGTERM at bad moments: it exits promptly, and rerunning
the same command finishes the run."""
import os
import shutil
import signal
import subprocess
import sys
import time

import orbax.checkpoint as ocp
import pytest

from tests.config_files import ROOT
from tests.train_records import write_dataset

CONFIG = """
from groupvit_jax.train.config_files import load_config

def get_config(arg=None):
    c = load_config({runlocal!r}, "runlocal")
    c.data.source = "records"
    c.data.data_dir = {data_dir!r}
    c.data.datasets = {{"d": 1.0}}
    c.data.global_batch = 4
    c.data.shuffle_buffer = 8
    c.data.num_threads = 1
    c.data.max_skipped_in_a_row = 10 ** 9  # a stream that never yields, as a stalled one
    c.data.max_skipped_fraction = 1.0
    c.total_steps = {total_steps}
    c.checkpoint_every_steps = 1
    c.log_every_steps = 1
    c.evals = {{}}
    return c
"""


def _config_file(tmp_path, total_steps):
    path = tmp_path / "config.py"
    path.write_text(CONFIG.format(runlocal=str(ROOT / "configs/gcc_yfcc_2stage.py"),
                                  data_dir=str(tmp_path / "data"), total_steps=total_steps))
    return path


def _command(config_file, workdir):
    return [sys.executable, "-m", "groupvit_jax.train", f"--config={config_file}",
            f"--workdir={workdir}"]


def _latest_step(workdir):
    return ocp.CheckpointManager(workdir / "checkpoints").latest_step()


ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
def test_sigterm_while_the_stream_yields_nothing(tmp_path):
    write_dataset(tmp_path / "data" / "d", "d", (20,), bad={(0, i) for i in range(20)})
    config_file, workdir = _config_file(tmp_path, 3), tmp_path / "run"
    process = subprocess.Popen(_command(config_file, workdir), cwd=ROOT, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while not (workdir / "config.json").exists():  # written just before the loop starts
            assert process.poll() is None, process.communicate()[0][-3000:]
            time.sleep(0.2)
        time.sleep(3)  # waiting for a batch that never comes
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, output[-3000:]
    assert "SIGTERM while waiting for data: step 0 is saved" in output
    # With the data repaired, the same command trains the run.
    shutil.rmtree(tmp_path / "data" / "d")
    write_dataset(tmp_path / "data" / "d", "d", (20,))
    rerun = subprocess.run(_command(config_file, workdir), cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _latest_step(workdir) == 3


@pytest.mark.slow
def test_two_sigterms_during_checkpoint_saves_then_rerun_finishes(tmp_path):
    write_dataset(tmp_path / "data" / "d", "d", (20,))
    config_file, workdir = _config_file(tmp_path, 12), tmp_path / "run"
    process = subprocess.Popen(_command(config_file, workdir), cwd=ROOT, env=ENV,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        steps = 0
        for line in process.stdout:  # every step saves: stop in the middle of saving
            steps += "loss=" in line
            if steps == 3:
                break
        process.send_signal(signal.SIGTERM)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode in (0, 143)
    assert _latest_step(workdir) < 12
    rerun = subprocess.run(_command(config_file, workdir), cwd=ROOT, env=ENV,
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _latest_step(workdir) == 12
