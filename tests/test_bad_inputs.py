"""Hostile inputs to the inference API and the binaries: each is refused at the boundary
with one clear line naming the value or the file, never a hang, a traceback or a
silently wrong result. One row per input: what is run, the error class (API) or exit
code (binary), and a fragment of the message."""
import hashlib
import json
import shutil

import numpy as np
import pytest
from ml_collections import ConfigDict

import groupvit_jax as gv
from groupvit_jax.checkpoints import convert_weights, integrity, pretrained, torch_layout
from groupvit_jax.evaluation import classification, demo, eval_cls, eval_seg, segmentation
from groupvit_jax.evaluation.predict import SegmentationPredictor
from groupvit_jax.models.pixels import normalize_pixels
from groupvit_jax.train import __main__ as train_main
from groupvit_jax.train import export as export_binary
from groupvit_jax.train import recipe
from input_pipeline import cli
from tests.tiny_pretrained import tiny_pretrained

TOKEN_EMBED = "['params']['text_tower']['token_embed']['embedding']"
ROW = 100  # the token embedding row the corruption tests overwrite
# The tiny model (tests/tiny.py) as a Hugging Face config.json describes it.
HF_CONFIG = {
    "model_type": "groupvit", "projection_dim": 16, "projection_intermediate_dim": 32,
    "vision_config": {"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 2,
                      "depths": [1, 1, 1], "num_group_tokens": [8, 4, 0],
                      "num_output_groups": [8, 4, 4], "image_size": 32, "patch_size": 8},
    "text_config": {"hidden_size": 32, "intermediate_size": 128, "num_attention_heads": 2,
                    "num_hidden_layers": 1, "max_position_embeddings": 16,
                    "vocab_size": 49408}}


@pytest.fixture(scope="module")
def model():
    return tiny_pretrained()


@pytest.fixture(scope="module")
def files(model, tmp_path_factory):
    """An export, an NVlabs .pth and Hugging Face folders (safetensors, .bin) of `model`."""
    torch = pytest.importorskip("torch")
    from safetensors.numpy import save_file
    root = tmp_path_factory.mktemp("checkpoints")
    gv.export(model, root / "export")
    variables = {k: np.asarray(v) for k, v in
                 torch_layout.to_torch(model.variables, model.config, torch_layout.NVLABS).items()}
    torch.save({"model": {k: torch.from_numpy(v) for k, v in variables.items()}},
               root / "release.pth")
    # Hugging Face's model has no multi-label temperature.
    hf_variables = {**model.variables, "params": {
        k: v for k, v in model.variables["params"].items() if k != "multi_label_logit_scale"}}
    hf_state = torch_layout.to_torch(hf_variables, model.config.replace(multi_label_scale=False),
                                     torch_layout.HF)
    for name in ("hf", "hf_bin"):
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps(HF_CONFIG))
    save_file({k: np.ascontiguousarray(v) for k, v in hf_state.items()},
              root / "hf" / "model.safetensors")
    torch.save({k: torch.from_numpy(np.array(v)) for k, v in hf_state.items()},
               root / "hf_bin" / "pytorch_model.bin")
    return root


def _copy(files, name, tmp_path):
    src = files / name
    dst = tmp_path / name
    (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    return dst


def _nan_row(model, path):
    """Overwrites row ROW of the token embedding where it sits in the file with 0xFF
    bytes (NaN in float32): corruption in the middle of the file that still decodes."""
    row = np.asarray(model.variables["params"]["text_tower"]["token_embed"]["embedding"][ROW])
    data = bytearray(path.read_bytes())
    at = data.find(row.tobytes())
    assert at > 0, path
    data[at:at + row.nbytes] = b"\xff" * row.nbytes
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


def _largest_file(folder):
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def _edit_json(path, edit):
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _flip_middle(path):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
    path.write_bytes(bytes(data))


# (id, the file or folder of a checkpoint to damage, how: damage(model, path), error
# class, message fragment); "{path}" in a fragment is the damaged file it must name.
LOADS = [
    ("pth_nan_row", "release.pth", _nan_row,
     ValueError, "{path}: text_encoder.token_embedding.weight has 32 non-finite values"),
    ("safetensors_nan_row", "hf/model.safetensors", _nan_row,
     ValueError, "{path}: text_model.embeddings.token_embedding.weight has 32 non-finite"),
    ("bin_nan_row", "hf_bin/pytorch_model.bin", _nan_row,
     ValueError, "{path}: text_model.embeddings.token_embedding.weight has 32 non-finite"),
    ("export_data_file_flipped", "export", lambda m, p: _flip_middle(_largest_file(p)),
     ValueError, "{path}/variables: " + TOKEN_EMBED + " does not match its recorded SHA-256"),
    ("safetensors_truncated", "hf/model.safetensors", lambda m, p: _truncate(p),
     ValueError, "{path}: not a readable safetensors file"),
    ("bin_truncated", "hf_bin/pytorch_model.bin", lambda m, p: _truncate(p),
     ValueError, "{path}: not a readable PyTorch checkpoint"),
    ("pth_empty", "release.pth", lambda m, p: p.write_bytes(b""),
     ValueError, "{path}: not a readable PyTorch checkpoint"),
    ("export_json_invalid", "export/groupvit_jax.json", lambda m, p: p.write_text('{"format": '),
     ValueError, "{path}: not valid JSON"),
    ("export_json_no_model", "export/groupvit_jax.json",
     lambda m, p: _edit_json(p, lambda d: {**d, "model": None}),
     ValueError, "{path}: not a valid model config"),
    ("export_json_bad_value", "export/groupvit_jax.json",
     lambda m, p: _edit_json(p, lambda d: {**d, "model": {**d["model"], "vision": 3}}),
     ValueError, "{path}: not a valid model config"),
    ("export_json_a_list", "export/groupvit_jax.json", lambda m, p: p.write_text("[1, 2]"),
     ValueError, "{path}: format 'list'"),
    ("export_variables_missing", "export/variables", lambda m, p: shutil.rmtree(p),
     FileNotFoundError, "{path}: missing"),
    ("hf_json_invalid", "hf/config.json", lambda m, p: p.write_text("{"),
     ValueError, "{path}: not valid JSON"),
    ("hf_json_a_list", "hf/config.json", lambda m, p: p.write_text("[]"),
     ValueError, "{path}: model_type is 'list'"),
    ("hf_json_bad_value", "hf/config.json",
     lambda m, p: _edit_json(p, lambda d: {**d, "vision_config": {"depths": 5}}),
     ValueError, "{path}: not a valid model config"),
]


@pytest.mark.parametrize("name, damage, error, fragment", [row[1:] for row in LOADS],
                         ids=[row[0] for row in LOADS])
def test_damaged_checkpoints_are_refused_naming_the_file(files, model, tmp_path, capsys,
                                                         name, damage, error, fragment):
    checkpoint = _copy(files, name.split("/")[0], tmp_path)
    damage(model, tmp_path / name)
    message = fragment.format(path=tmp_path / name)
    with pytest.raises(error) as caught:
        gv.load_pretrained(checkpoint)
    assert message in str(caught.value)
    # The converter refuses it the same way: exit 3, the message on one line.
    if not (checkpoint / pretrained.META_FILE).exists():
        argv = ["convert_weights", f"--src={checkpoint}", f"--dst={tmp_path / 'out'}"]
        assert convert_weights.main(argv) == cli.DATA_ERROR
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "out").exists()


def test_export_checksums_round_trip(model, files, tmp_path):
    meta = json.loads((files / "export" / pretrained.META_FILE).read_text())
    leaves = dict(integrity.named_leaves(model.variables))
    assert set(meta["sha256"]) == set(leaves)
    embed = np.asarray(leaves[TOKEN_EMBED], np.float32)
    assert meta["sha256"][TOKEN_EMBED] == hashlib.sha256(embed.tobytes()).hexdigest()
    loaded = gv.load_pretrained(files / "export")
    assert integrity.checksums(loaded.variables) == meta["sha256"]
    # An export from before checksums still loads (finite-checked only).
    old = _copy(files, "export", tmp_path)
    _edit_json(old / pretrained.META_FILE, lambda d: {k: v for k, v in d.items() if k != "sha256"})
    np.testing.assert_array_equal(gv.load_pretrained(old).variables["params"]["logit_scale"],
                                  model.variables["params"]["logit_scale"])


def test_export_refuses_non_finite_weights(model, tmp_path):
    variables = {**model.variables, "params": dict(model.variables["params"])}
    variables["params"]["logit_scale"] = np.float32(np.nan)
    with pytest.raises(ValueError, match=r"\['params'\]\['logit_scale'\] has 1 non-finite"):
        gv.export(gv.PretrainedGroupViT(model.config, variables), tmp_path / "e")
    assert not (tmp_path / "e").exists()


# encode_image / encode_text: (id, call on the model, fragment).
CALLS = [
    ("images_int32", lambda m: m.encode_image(np.zeros((1, 32, 32, 3), np.int32)),
     "images of dtype int32: pass uint8 RGB pixels"),
    ("images_bool", lambda m: m.encode_image(np.zeros((1, 32, 32, 3), bool)), "dtype bool"),
    ("images_empty_batch", lambda m: m.encode_image(np.zeros((0, 32, 32, 3), np.float32)),
     "non-empty [B, H, W, 3] RGB batch, got shape (0, 32, 32, 3)"),
    ("images_unbatched", lambda m: m.encode_image(np.zeros((32, 32, 3), np.uint8)),
     "got shape (32, 32, 3)"),
    ("images_nan", lambda m: m.encode_image(np.full((1, 32, 32, 3), np.nan, np.float32)),
     "images hold 3072 NaN or inf values"),
    ("images_inf", lambda m: m.encode_image(np.pad(np.full((1, 32, 32, 2), 0.5, np.float32),
                                                   ((0, 0),) * 3 + ((0, 1),),
                                                   constant_values=np.inf)),
     "images hold 1024 NaN or inf values"),
    ("token_past_vocab", lambda m: m.encode_text(np.array([[49406, 49408, 49407]])),
     "token id 49408 at [0, 1] is outside the vocabulary of 49408 ids [0, 49408)"),
    ("token_negative", lambda m: m.encode_text(np.array([[49406, 5, 49407], [49406, -3, 0]])),
     "token id -3 at [1, 1] is outside the vocabulary of 49408"),
    ("tokens_float", lambda m: m.encode_text(np.zeros((1, 16), np.float32)), "integer ids"),
    ("tokens_empty", lambda m: m.encode_text(np.zeros((0, 16), np.int32)),
     "non-empty [N, L] batch of ids, got shape (0, 16)"),
    ("tokens_1d", lambda m: m.encode_text(np.zeros(16, np.int32)), "got shape (16,)"),
    ("tokens_too_long", lambda m: m.encode_text(np.zeros((1, 17), np.int32)),
     "longer than the model's context of 16"),
    ("bg_thresh_2", lambda m: SegmentationPredictor(m, ["cat"], bg_thresh=2),
     "bg_thresh=2: a score threshold in [0, 1]"),
    ("seg_limit_0", lambda m: segmentation.evaluate(None, None, limit=0), "limit=0"),
    ("cls_limit_negative", lambda m: classification.evaluate(m, None, limit=-1), "limit=-1"),
    ("cls_batch_0", lambda m: next(classification.batch_scores(m, None, batch_size=0)),
     "batch_size=0"),
]


@pytest.mark.parametrize("call, fragment", [row[1:] for row in CALLS],
                         ids=[row[0] for row in CALLS])
def test_bad_api_values_are_named(model, call, fragment):
    with pytest.raises(ValueError) as caught:
        call(model)
    assert fragment in str(caught.value)


def test_uint8_images_are_normalised_by_the_model(model):
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    from_uint8 = model.encode_image(images)
    normalised = model.encode_image(normalize_pixels(images))
    for key in ("image_embeds", "segment_embeds"):
        np.testing.assert_array_equal(from_uint8[key], normalised[key])
    # The bug this replaces: the 0-255 values taken as normalised floats.
    raw = np.asarray(model.encode_image(images.astype(np.float32))["image_embeds"])
    assert not np.allclose(raw, from_uint8["image_embeds"], atol=1e-3)
    # The rule's arithmetic: (x - mean) * (1 / std), ImageNet's statistics on 0-255.
    corners = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    np.testing.assert_allclose(
        normalize_pixels(corners),
        [[-123.675 / 58.395, -116.28 / 57.12, -103.53 / 57.375],
         [131.325 / 58.395, 138.72 / 57.12, 151.47 / 57.375]], rtol=1e-6)


def _config_with(**data):
    config = ConfigDict({"data": {"global_batch": 8, "examples_per_epoch": 100,
                                  "num_prompts": 3},
                         "grad_accum_steps": 1, "warmup_epochs": 1.0, "log_every_steps": 1,
                         "checkpoint_every_steps": 1, "keep_checkpoints": 1, "epochs": 2,
                         "total_steps": -1, "multi_label_weight": 1.0,
                         "optim": {"base_lr": 1e-3, "exclude_extra_from_decay": False}})
    config.data.update(data)
    return config


def test_config_counts_are_checked():
    assert recipe.total_steps(_config_with()) == 2 * 12
    with pytest.raises(ValueError, match=r"config data.global_batch=0: must be a finite number >= 1"):
        recipe.total_steps(_config_with(global_batch=0))
    with pytest.raises(ValueError, match=r"config data.examples_per_epoch=-5: must be a finite number >= 1"):
        recipe.warmup_steps(_config_with(examples_per_epoch=-5))


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("x")
    return path


# Binaries: (id, module, argv after the program name with {tmp}, {file} (an existing
# file), {export}, {hf}; exit code; stderr fragment). A checkpoint "{tmp}/none" that does
# not exist shows the value was checked before any model work.
COMMANDS = [
    ("seg_bg_thresh_2", eval_seg, ["--checkpoint={tmp}/none", "--dataset=voc",
                                   "--data_dir={tmp}", "--bg_thresh=2"], 2,
     "flag --bg_thresh=2: 2.0 is not a number in the range [0, 1]"),
    ("seg_bg_thresh_negative", eval_seg, ["--checkpoint={tmp}/none", "--dataset=voc",
                                          "--data_dir={tmp}", "--bg_thresh=-0.1"], 2,
     "--bg_thresh=-0.1"),
    ("seg_limit_0", eval_seg, ["--checkpoint={tmp}/none", "--dataset=voc", "--data_dir={tmp}",
                               "--limit=0"], 2, "flag --limit=0"),
    ("seg_limit_negative", eval_seg, ["--checkpoint={tmp}/none", "--dataset=voc",
                                      "--data_dir={tmp}", "--limit=-1"], 2, "flag --limit=-1"),
    ("seg_out_is_a_folder", eval_seg, ["--checkpoint={tmp}/none", "--dataset=voc",
                                       "--data_dir={tmp}", "--out={tmp}"], 3,
     "{tmp}: a folder, a file is expected"),
    ("seg_vis_dir_is_a_file", eval_seg, ["--checkpoint={tmp}/none", "--dataset=voc",
                                         "--data_dir={tmp}", "--vis_dir={file}"], 3,
     "{file}: a file, a folder is expected"),
    ("seg_out_under_a_file", eval_seg, ["--checkpoint={tmp}/none", "--dataset=voc",
                                        "--data_dir={tmp}", "--out={file}/r.json"], 3,
     "{file}/r.json: {file} is a file, not a folder"),
    ("seg_truncated_hf_checkpoint", eval_seg, ["--checkpoint={hf}", "--dataset=folder",
                                               "--data_dir={folder}"], 3,
     "{hf}/model.safetensors: not a readable safetensors file"),
    ("cls_limit_0", eval_cls, ["--checkpoint={tmp}/none", "--data_dir={tmp}", "--limit=0"], 2,
     "flag --limit=0"),
    ("cls_batch_size_0", eval_cls, ["--checkpoint={tmp}/none", "--data_dir={tmp}",
                                    "--batch_size=0"], 2, "flag --batch_size=0"),
    ("cls_out_is_a_folder", eval_cls, ["--checkpoint={tmp}/none", "--data_dir={tmp}",
                                       "--out={tmp}"], 3, "{tmp}: a folder, a file is expected"),
    ("demo_bg_thresh", demo, ["--checkpoint={tmp}/none", "--image={file}", "--classes=cat",
                              "--out={tmp}/d", "--bg_thresh=1.5"], 2, "flag --bg_thresh=1.5"),
    ("demo_stride_past_window", demo, ["--checkpoint={tmp}/none", "--image={file}",
                                       "--classes=cat", "--out={tmp}/d", "--stride=500"], 2,
     "--stride, --window: invalid evaluation scale"),
    ("demo_stride_0", demo, ["--checkpoint={tmp}/none", "--image={file}", "--classes=cat",
                             "--out={tmp}/d", "--stride=0"], 2, "flag --stride=0"),
    ("demo_out_is_a_file", demo, ["--checkpoint={tmp}/none", "--image={file}", "--classes=cat",
                                  "--out={file}"], 3, "{file}: a file, a folder is expected"),
    ("demo_image_is_a_folder", demo, ["--checkpoint={tmp}/none", "--image={tmp}",
                                      "--classes=cat", "--out={tmp}/d"], 3,
     "{tmp}: image not found"),
    ("demo_image_not_an_image", demo, ["--checkpoint={tmp}/none", "--image={file}",
                                       "--classes=cat", "--out={tmp}/d"], 3, "{file}"),
    ("convert_dst_is_a_file", convert_weights, ["--src={hf}", "--dst={file}"], 3,
     "{file}: a file, a folder is expected"),
    ("convert_dst_under_a_file", convert_weights, ["--src={hf}", "--dst={file}/out"], 3,
     "{file}/out: {file} is a file, not a folder"),
    ("convert_dst_not_empty", convert_weights, ["--src={hf}", "--dst={tmp}"], 3,
     "exists and is not empty; pass overwrite=True (--overwrite)"),
    ("export_step_negative", export_binary, ["--workdir={tmp}", "--out={tmp}/e", "--step=-1"],
     2, "flag --step=-1"),
    ("export_out_is_a_file", export_binary, ["--workdir={tmp}", "--out={file}"], 3,
     "{file}: a file, a folder is expected"),
    ("train_global_batch_0", train_main, ["--config=configs/gcc_yfcc_2stage.py:runlocal",
                                          "--config.data.global_batch=0", "--workdir={tmp}/w"],
     3, "config data.global_batch=0: must be a finite number >= 1"),
    ("train_grad_accum_0", train_main, ["--config=configs/gcc_yfcc_2stage.py:runlocal",
                                        "--config.grad_accum_steps=0", "--workdir={tmp}/w"],
     3, "config grad_accum_steps=0: must be a finite number >= 1"),
    ("train_num_prompts_negative", train_main, ["--config=configs/gcc_yfcc_2stage.py:runlocal",
                                                "--config.data.num_prompts=-1",
                                                "--workdir={tmp}/w"],
     3, "config data.num_prompts=-1: must be a finite number >= 0"),
    ("train_lr_nan", train_main, ["--config=configs/gcc_yfcc_2stage.py:runlocal",
                                  "--config.optim.base_lr=nan", "--workdir={tmp}/w"],
     3, "config optim.base_lr=nan: must be a finite number >= 0"),
]


@pytest.mark.parametrize("binary, argv, code, fragment", [row[1:] for row in COMMANDS],
                         ids=[row[0] for row in COMMANDS])
def test_bad_command_lines_exit_with_one_line(files, folder_dataset, a_file, tmp_path, capsys,
                                              binary, argv, code, fragment):
    hf = tmp_path / "hf"
    shutil.copytree(files / "hf", hf)
    if "{hf}/model.safetensors" in fragment:
        _truncate(hf / "model.safetensors")
    names = dict(tmp=tmp_path, file=a_file, hf=hf, folder=folder_dataset)
    assert binary.main([binary.__name__, *(a.format(**names) for a in argv)]) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert fragment.format(**names) in err, err
    assert not (tmp_path / "w").exists() and not (tmp_path / "d").exists()
