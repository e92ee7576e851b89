"""A resume that cannot go ahead stops with the reason and leaves the workdir as it was;
an unreadable latest checkpoint falls back to the previous one."""
import glob
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from groupvit_jax.train import checkpointing, export, trainer

from tests.config_files import ROOT, load_config

CONFIG = ROOT / "configs/gcc_yfcc_2stage.py"


def _config(total_steps):
    config = load_config(CONFIG, "runlocal")
    config.total_steps = total_steps
    config.checkpoint_every_steps = 3
    config.evals = {}
    return config


@pytest.fixture(scope="module")
def six_steps(tmp_path_factory):
    """A workdir trained 6 steps (checkpoints 3 and 6, and Orbax's first, 1)."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    trainer.train_and_evaluate(_config(6), workdir)
    assert checkpointing.saved_steps(workdir) == [1, 3, 6]
    return workdir


@pytest.fixture
def workdir(six_steps, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(six_steps, copy)
    return copy


def _truncate(folder):
    for path in glob.glob(str(folder / "**" / "*"), recursive=True):
        if os.path.isfile(path) and os.path.getsize(path) > 100:
            with open(path, "r+b") as f:
                f.truncate(os.path.getsize(path) // 2)


def _params(workdir, step):
    mgr = ocp.CheckpointManager(workdir / "checkpoints")
    return mgr.restore(step)["params"]


def test_resuming_with_another_model_names_the_change_and_keeps_the_config(workdir):
    saved = (workdir / "config.json").read_bytes()
    result = subprocess.run(
        [sys.executable, "-m", "groupvit_jax.train", f"--config={CONFIG}:runlocal",
         f"--workdir={workdir}", "--config.model.text.width=128"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stderr[-3000:]
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error == [f"error: {workdir}: this run's checkpoints are of another model "
                     f"(model.text.width: 64 in {workdir / 'config.json'}, 128 now). Resume "
                     "with the run's config, or train in a new workdir."]
    assert "Event loop is closed" not in result.stderr
    assert (workdir / "config.json").read_bytes() == saved
    assert checkpointing.saved_steps(workdir) == [1, 3, 6]


def test_a_truncated_latest_checkpoint_falls_back_to_the_previous(workdir, tmp_path, caplog):
    without_6 = tmp_path / "without_6"
    shutil.copytree(workdir, without_6)
    shutil.rmtree(without_6 / "checkpoints" / "6")
    _truncate(workdir / "checkpoints" / "6")
    trainer.train_and_evaluate(_config(9), workdir)
    assert "checkpoint step 6 is unreadable" in caplog.text
    assert "resuming from step 3" in caplog.text
    assert [p.name.split("-")[0] for p in checkpointing.set_aside_dir(workdir).iterdir()] == ["6"]
    # The same as resuming a workdir that never had step 6.
    trainer.train_and_evaluate(_config(9), without_6)
    jax.tree.map(np.testing.assert_array_equal, _params(workdir, 9), _params(without_6, 9))


def test_no_readable_checkpoint_names_every_step_and_moves_nothing(workdir):
    for step in (1, 3, 6):
        _truncate(workdir / "checkpoints" / str(step))
    with pytest.raises(checkpointing.CheckpointError,
                       match=r"no checkpoint can be restored \(step 6: .*; step 3: .*; step 1: "):
        trainer.train_and_evaluate(_config(9), workdir)
    assert checkpointing.saved_steps(workdir) == [1, 3, 6]
    assert not checkpointing.set_aside_dir(workdir).exists()


def test_export_refuses_a_checkpoint_that_is_not_the_configs_model(workdir, tmp_path):
    config = (workdir / "config.json").read_text()
    (workdir / "config.json").write_text(config.replace('"width": 64', '"width": 96', 1))
    code = export.main(["export", "--workdir", str(workdir), "--out", str(tmp_path / "out")])
    assert code == 3
    assert not (tmp_path / "out").exists()
