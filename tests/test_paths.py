"""One path type (input_pipeline/paths.py): gs:// and local paths are never rewritten;
a path no file system here handles is refused, naming it. The same code against a
bucket: tests/test_gcs.py."""
import os
import pathlib

import pytest

from groupvit_jax.checkpoints import pretrained
from groupvit_jax.train import __main__ as train_main
from groupvit_jax.train import checkpointing
from input_pipeline import cli, paths
from tests.config_files import ROOT


def test_gs_urls_are_kept_whole():
    run = paths.as_path("gs://bucket/runs/a")
    assert str(run / "config.json") == "gs://bucket/runs/a/config.json"
    assert str(paths.absolute("gs://bucket/runs/a")) == "gs://bucket/runs/a"
    assert paths.is_remote(run) and not paths.is_remote("runs/a")
    # Where the workdir's files go: in the bucket, not in a local "gs:" folder.
    for folder, name in ((checkpointing.checkpoint_dir, "checkpoints"),
                         (checkpointing.data_state_dir, "data_state"),
                         (checkpointing.set_aside_dir, "unreadable_checkpoints")):
        assert str(folder("gs://bucket/runs/a")) == f"gs://bucket/runs/a/{name}"


def test_local_paths_stay_as_given(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(paths.as_path("runs/a")) == "runs/a"
    assert str(paths.absolute("runs/a")) == str(tmp_path / "runs/a")
    assert str(checkpointing.checkpoint_dir("runs/a")) == str(tmp_path / "runs/a/checkpoints")
    assert str(paths.as_path(tmp_path / "x")) == str(tmp_path / "x")


@pytest.mark.parametrize("path, message", [
    ("s3://bucket/run", "no file system here handles s3:// paths"),
    ("foo://bucket/run", "no file system here handles foo:// paths"),
    # pathlib.Path("gs://bucket/run") is the local "gs:/bucket/run".
    (pathlib.Path("gs://bucket/run"), "a gs:// URL whose '//' was lost"),
])
def test_unhandled_paths_are_refused_by_name(path, message):
    with pytest.raises(ValueError, match=message) as error:
        paths.as_path(path)
    assert str(error.value).startswith(f"{os.fspath(path)}: ")


def test_export_destination_is_never_a_local_gs_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="'//' was lost"):
        pretrained.check_export_destination(pathlib.Path("gs://bucket/export"), False)
    assert list(tmp_path.iterdir()) == []


def test_trainer_refuses_an_unhandled_workdir_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = train_main.main(["train", f"--config={ROOT / 'configs/gcc_yfcc_2stage.py'}:runlocal",
                            "--workdir=gcs://bucket/run"])
    assert code == cli.USAGE_ERROR
    assert capsys.readouterr().err.strip() == (
        "error: --workdir: gcs://bucket/run: no file system here handles gcs:// paths "
        "(supported: local paths and gs://)")
    assert list(tmp_path.iterdir()) == []  # no "gcs:" folder


def test_atomic_write_leaves_only_the_file(tmp_path):
    target = tmp_path / "a" / "b.json"
    paths.write_atomically(target, b"{}")
    paths.write_atomically(target, b"[]")
    assert target.read_bytes() == b"[]"
    assert [p.name for p in target.parent.iterdir()] == ["b.json"]
