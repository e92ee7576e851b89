"""A training run, its export and an evaluation with every file in a bucket: a local
Cloud Storage emulator (tests/gcs_emulator.py), started and stopped here; no traffic
leaves loopback (tests/loopback_only.py)."""
import json
import re
import signal
import subprocess

import fsspec
import gcsfs
import jax
import numpy as np
import pytest

import groupvit_jax as gv
from groupvit_jax.checkpoints import pretrained
from groupvit_jax.evaluation import eval_seg
from groupvit_jax.train import checkpointing
from input_pipeline import cli, paths
from tests import loopback_only
from tests.eval_data import write_folder_dataset
from tests.gcs_emulator import ROOT, Emulator

BUCKET = "groupvit-test"
RUN = f"gs://{BUCKET}/runs/tiny"


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    """The emulator, with this process's clients pointed at it and its sockets kept on
    loopback (a refused attempt fails the module's last test)."""
    emulator = Emulator(BUCKET, tmp_path_factory.mktemp("gcs"))
    with emulator, pytest.MonkeyPatch.context() as patch:
        for key, value in emulator.env.items():
            patch.setenv(key, value)
        patch.setitem(fsspec.config.conf, "gs", {"token": "anon"})  # read at import
        log = str(emulator.refusals)
        for name in ("connect", "connect_ex"):
            patch.setattr(loopback_only.socket.socket, name, loopback_only.guarded_connect(
                getattr(loopback_only.socket.socket, name), log))
        patch.setattr(loopback_only.socket, "getaddrinfo", loopback_only.guarded_getaddrinfo(
            loopback_only.socket.getaddrinfo, log))
        yield emulator


@pytest.fixture(scope="module")
def bucket(gcs):
    return gcsfs.GCSFileSystem(token="anon", skip_instance_cache=True)


def _train(gcs, cwd, *extra):
    return gcs.command("groupvit_jax.train",
                       f"--config={ROOT / 'configs/gcc_yfcc_2stage.py'}:runlocal",
                       f"--workdir={RUN}", f"--tensorboard_dir={cwd / 'tensorboard'}",
                       "--config.log_every_steps=1", "--config.checkpoint_every_steps=1000",
                       *extra)


def _run(gcs, command, cwd, **kwargs):
    env = {**gcs.env, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900, **kwargs)


def _steps(bucket, folder):
    return sorted(int(p.rsplit("/", 1)[-1]) for p in bucket.ls(folder, refresh=True)
                  if p.rsplit("/", 1)[-1].isdigit())


@pytest.mark.slow  # ~4 min: two training runs, two exports
def test_train_stop_resume_export_in_a_bucket(gcs, bucket, tmp_path):
    # A run in the bucket, stopped by SIGTERM after its first step.
    proc = subprocess.Popen(_train(gcs, tmp_path), cwd=tmp_path,
                            env={**gcs.env, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "loss=" in line:
            break
    proc.send_signal(signal.SIGTERM)
    output = "".join(lines) + proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output[-3000:]
    stopped_at = _steps(bucket, f"{RUN}/checkpoints")
    assert len(stopped_at) == 1 and 0 < stopped_at[0] < 30, stopped_at
    saved = json.loads(bucket.cat(f"{RUN}/config.json"))
    assert saved["total_steps"] == 30 and saved["data"]["source"] == "synthetic"

    # Rerun: resumes from the bucket's checkpoint to the end.
    resumed = _run(gcs, _train(gcs, tmp_path), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    losses_at = [int(step) for step in re.findall(r"\] \[(\d+)\] .*\bloss=", resumed.stderr)]
    assert losses_at == list(range(stopped_at[0] + 1, 31)), resumed.stderr[-3000:]
    assert _steps(bucket, f"{RUN}/checkpoints")[-1] == 30
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))

    # Export to the bucket and to a local folder: the same model either way.
    for out in (f"gs://{BUCKET}/export", str(tmp_path / "export")):
        exported = _run(gcs, gcs.command("groupvit_jax.train.export", f"--workdir={RUN}",
                                         f"--out={out}"), tmp_path)
        assert exported.returncode == 0, exported.stderr[-3000:]
    assert bucket.exists(f"{BUCKET}/export/groupvit_jax.json")
    from_bucket = gv.load_pretrained(f"gs://{BUCKET}/export")
    local = gv.load_pretrained(tmp_path / "export")
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), np.uint8)
    tokens = local.tokenize(["a red square.", "a blue disc."])
    np.testing.assert_array_equal(from_bucket.encode_image(images)["image_embeds"],
                                  local.encode_image(images)["image_embeds"])
    np.testing.assert_array_equal(from_bucket.encode_text(tokens), local.encode_text(tokens))

    # No path was rewritten: nothing named "gs:" was made where the binaries ran.
    assert not (tmp_path / "gs:").exists() and not (ROOT / "gs:").exists()
    assert gcs.refused() == []


@pytest.mark.slow  # ~1 min: the tiny model's window pass compiles
def test_eval_seg_reads_and_writes_a_bucket(gcs, bucket, tmp_path):
    from tests.tiny_pretrained import random_model

    local_data = write_folder_dataset(tmp_path)
    bucket.put(str(local_data), f"{BUCKET}/eval/folder", recursive=True)
    gv.export(random_model(), f"gs://{BUCKET}/models/random")
    results = {}
    for where, data_dir, out, vis in (
            ("local", local_data, tmp_path / "seg.json", tmp_path / "vis"),
            ("bucket", f"gs://{BUCKET}/eval/folder", f"gs://{BUCKET}/results/seg.json",
             f"gs://{BUCKET}/results/vis")):
        code = eval_seg.main(["eval_seg", f"--checkpoint=gs://{BUCKET}/models/random",
                              "--dataset=folder", f"--data_dir={data_dir}", f"--out={out}",
                              f"--vis_dir={vis}", "--bg_thresh=0.5"])
        assert code == 0
        results[where] = json.loads(paths.as_path(out).read_text())
    for key in ("mIoU", "aAcc", "per_class", "num_images"):
        assert results["bucket"][key] == results["local"][key], key
    assert results["bucket"]["num_images"] == 3
    assert sorted(p.rsplit("/", 1)[-1] for p in bucket.ls(f"{BUCKET}/results/vis")) == \
        sorted(p.name for p in (tmp_path / "vis").iterdir())
    assert gcs.refused() == []


def test_data_positions_in_a_bucket(gcs, bucket):
    workdir = f"gs://{BUCKET}/runs/positions"
    for step in (10, 20, 30):  # Orbax keeps the last two
        checkpointing.save_data_state(workdir, step, 0, {"position": step}, {step - 10, step})
    assert _steps(bucket, f"{workdir}/data_state") == [20, 30]
    assert checkpointing.restore_data_state(workdir, 30, 0) == {"position": 30}
    assert checkpointing.restore_data_state(workdir, 10, 0) is None
    checkpointing.prune_data_states(workdir, 0, {30})
    assert _steps(bucket, f"{workdir}/data_state") == [30]
    assert bucket.ls(f"{workdir}/data_state/30", refresh=True) == [
        f"{BUCKET}/runs/positions/data_state/30/process_0.json"]  # no temporary file left
    assert not any(p.name.startswith("gs:") for p in paths.as_path(".").iterdir())
    assert gcs.refused() == []


def test_pytorch_checkpoints_load_from_a_bucket(gcs, bucket, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests import torch_reference
    from tests.test_checkpoints import TEXT, VISION, _write_nvlabs_file

    hf = torch_reference.hf_model(VISION, TEXT)
    _write_nvlabs_file(hf, tmp_path / "release.pth")
    hf.save_pretrained(tmp_path / "hf")
    bucket.put(str(tmp_path / "release.pth"), f"{BUCKET}/torch/release.pth")
    bucket.put(str(tmp_path / "hf"), f"{BUCKET}/torch/hf", recursive=True)
    for local, remote in ((tmp_path / "release.pth", f"gs://{BUCKET}/torch/release.pth"),
                          (tmp_path / "hf", f"gs://{BUCKET}/torch/hf")):
        a, b = gv.load_pretrained(local), gv.load_pretrained(remote)
        assert a.config == b.config
        for x, y in zip(*(jax.tree.leaves(m.variables) for m in (a, b))):
            np.testing.assert_array_equal(x, y)
    assert gcs.refused() == []


def test_binary_files_in_a_bucket(gcs, bucket):
    out = f"gs://{BUCKET}/files/results.json"
    assert str(cli.check_writable(out, folder=False)) == out
    cli.write_json({"mIoU": 1.5}, out)
    assert cli.read_json(out) == {"mIoU": 1.5}
    with pytest.raises(IsADirectoryError, match="a folder, a file is expected"):
        cli.check_writable(f"gs://{BUCKET}/files", folder=False)
    with pytest.raises(FileExistsError, match="not empty"):
        pretrained.check_export_destination(f"gs://{BUCKET}/files", False)
    assert gcs.refused() == []


def test_a_dataset_converted_into_a_bucket_resolves_as_locally(gcs, bucket, tmp_path):
    from input_pipeline import convert, mixture, records
    from input_pipeline.shards import ShardReading
    from tests.train_records import _jpeg

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(5):
        (photos / f"{i}.jpg").write_bytes(_jpeg(i))
        (photos / f"{i}.txt").write_text(f"a dog number {i}")
    remote = f"gs://{BUCKET}/data/dogs"
    options = dict(examples_per_shard=2, tagger=None, progress=False)
    local = convert.convert_dataset([str(photos)], "folder", tmp_path / "dogs", **options)
    manifest = convert.convert_dataset([str(photos)], "folder", remote, **options)
    shards = [(s["file"], s["num_examples"], s["bytes"]) for s in manifest["shards"]]
    assert shards == [(s["file"], s["num_examples"], s["bytes"]) for s in local["shards"]]
    assert bucket.cat(f"{BUCKET}/data/dogs/{shards[0][0]}") == (
        tmp_path / "dogs" / shards[0][0]).read_bytes()
    # The training stream's view of it: TFDS's metadata, the shards and their sizes.
    fields = {"image": "image", "caption": "caption", "nouns": "", "caption_choice": "first"}
    (source,) = mixture.resolve({f"gs://{BUCKET}/data/dog*": 1.0}, "", fields)
    assert (source.name, source.num_examples) == ("dogs", 5)
    assert [(f.rsplit("/", 1)[1], n) for f, n in source.shards()] == [s[:2] for s in shards]
    assert ShardReading([source]).lost == 0
    with pytest.raises(FileExistsError, match="not empty; pass --overwrite"):
        convert.convert_dataset([str(photos)], "folder", remote, **options)
    again = convert.convert_dataset([str(photos)], "folder", remote, overwrite=True,
                                    **{**options, "examples_per_shard": 5})
    assert [s["num_examples"] for s in again["shards"]] == [5]
    assert sorted(p.rsplit("/", 1)[1] for p in bucket.ls(f"{BUCKET}/data/dogs", refresh=True)
                  ) == sorted(["dataset_info.json", "features.json", records.MANIFEST,
                               "skipped.jsonl", records.shard_name("train", 0, 1)])
    assert gcs.refused() == []
