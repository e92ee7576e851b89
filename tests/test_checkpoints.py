"""Round trips between the PyTorch layouts, our export format and the convert CLI."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
omegaconf = pytest.importorskip("omegaconf")

import groupvit_jax as gv  # noqa: E402
from tests import torch_reference  # noqa: E402
from groupvit_jax.checkpoints import convert_weights  # noqa: E402
from groupvit_jax.checkpoints import torch_layout  # noqa: E402

# Small, but every kind of weight is there. Vision heads (2) differ from width // 64 (3),
# so loading an NVlabs file must read them from its pickled config.
VISION = {"hidden_size": 192, "intermediate_size": 768, "num_attention_heads": 2, "depths": [1, 1, 1],
          "num_group_tokens": [8, 4, 0], "num_output_groups": [8, 4, 4], "image_size": 32,
          "patch_size": 8}
TEXT = {"hidden_size": 64, "intermediate_size": 256, "num_attention_heads": 1,
        "num_hidden_layers": 1, "max_position_embeddings": 16}
IMAGES = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def hf():
    return torch_reference.hf_model(VISION, TEXT)


def _tokens(model):
    return model.tokenize(["a photo of a cat.", "two dogs on the grass"])


def _same_variables(a, b):
    import jax
    flat_a = jax.tree_util.tree_flatten_with_path(a)[0]
    flat_b = dict(jax.tree_util.tree_flatten_with_path(b)[0])
    assert len(flat_a) == len(flat_b)
    for path, value in flat_a:
        np.testing.assert_array_equal(np.asarray(value), np.asarray(flat_b[path]),
                                      err_msg=jax.tree_util.keystr(path))


def _same_outputs(m1, m2):
    o1, o2 = m1.encode_image(IMAGES), m2.encode_image(IMAGES)
    for key in ("image_embeds", "segment_embeds"):
        np.testing.assert_array_equal(o1[key], o2[key])
    np.testing.assert_array_equal(m1.encode_text(_tokens(m1)), m2.encode_text(_tokens(m2)))


def test_hf_to_ours_to_hf_is_identical(hf):
    state = torch_reference.numpy_state(hf)
    config, variables = torch_reference.convert(hf)
    back = torch_layout.to_torch(variables, config, torch_layout.HF)
    weights = {k for k in state if not k.endswith(torch_layout.IGNORED_SUFFIXES)}
    assert set(back) == weights
    for key in weights:
        np.testing.assert_array_equal(back[key], state[key], err_msg=key)


def test_released_nvlabs_layout_has_407_keys():
    keys = {k for e in torch_layout.layout(gv.GroupViTConfig(), torch_layout.NVLABS) for k in e.keys}
    # + num_batches_tracked of the two projector BatchNorms, as in the released files.
    assert len(keys) + 2 == 407


def _write_nvlabs_file(hf, path):
    """An NVlabs-style release file built from the HF model through the inverse key map,
    with a pickled OmegaConf config and a multi-label temperature like the originals."""
    config, variables = torch_reference.convert(hf)
    config = config.replace(multi_label_scale=True, logit_scale_init=float(np.log(1 / 0.05)))
    variables["params"]["multi_label_logit_scale"] = np.float32(1.5)
    state = {k: torch.from_numpy(v) for k, v in
             torch_layout.to_torch(variables, config, torch_layout.NVLABS).items()}
    for head in ("img_projector", "text_projector"):
        state[f"{head}.linear_hidden.1.num_batches_tracked"] = torch.tensor(1000)
    meta = omegaconf.OmegaConf.create({"model": {
        "type": "MultiLabelContrastive", "contrast_temperature": 0.05,
        "img_encoder": {"type": "GroupViT", "embed_dim": 192, "num_heads": [2, 2, 2],
                        "depths": [1, 1, 1], "drop_path_rate": 0.1},
        "text_encoder": {"type": "TextTransformer", "width": 64, "layers": 1}}})
    torch.save({"model": state, "config": meta, "epoch": 30}, path)
    return config, variables


def test_nvlabs_file_loads_to_the_same_model(hf, tmp_path):
    path = tmp_path / "group_vit_gcc_yfcc_30e.pth"
    config, variables = _write_nvlabs_file(hf, path)
    loaded = gv.load_pretrained(path)
    assert loaded.config == config
    assert loaded.config.vision.num_heads == 2
    _same_variables(loaded.variables, variables)
    _same_outputs(loaded, gv.PretrainedGroupViT(config, variables))


def test_export_then_load_is_identical(hf, tmp_path):
    config, variables = torch_reference.convert(hf)
    model = gv.PretrainedGroupViT(config, variables)
    out = gv.export(model, tmp_path / "export")
    loaded = gv.load_pretrained(out)
    assert loaded.config == config
    _same_variables(loaded.variables, model.variables)
    _same_outputs(loaded, model)
    with pytest.raises(FileExistsError, match="not empty"):
        gv.export(model, out)
    gv.export(loaded, out, overwrite=True)


def test_convert_cli_from_a_hugging_face_folder(hf, tmp_path, capsys):
    hf.save_pretrained(tmp_path / "hf")
    args = ["convert_weights", f"--src={tmp_path / 'hf'}", f"--dst={tmp_path / 'ours'}"]
    assert convert_weights.main(args) == 0
    assert "converted hf checkpoint" in capsys.readouterr().out
    _same_outputs(gv.load_pretrained(tmp_path / "ours"),
                  gv.PretrainedGroupViT(*torch_reference.convert(hf)))
    # Never overwrites without being asked.
    assert convert_weights.main(args) == 3
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text("not a checkpoint"), "not a readable PyTorch checkpoint"),
    (lambda p: torch.save({"state_dict": {}}, p), "holds its weights under 'model'"),
    (lambda p: torch.save({"model": {"foo.weight": torch.zeros(1)}}, p), "not an NVlabs GroupViT"),
])
def test_convert_cli_names_bad_nvlabs_files(tmp_path, capsys, make, message):
    src = tmp_path / "bad.pth"
    make(src)
    assert convert_weights.main(["convert_weights", f"--src={src}",
                                 f"--dst={tmp_path / 'out'}"]) == 3
    err = capsys.readouterr().err
    assert message in err and str(src) in err
    assert not (tmp_path / "out").exists()


def test_unknown_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        gv.load_pretrained(tmp_path / "missing.pth")
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(ValueError, match="unknown checkpoint type"):
        gv.load_pretrained(tmp_path / "weights.txt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ValueError, match="neither our export"):
        gv.load_pretrained(tmp_path / "folder")


def test_missing_and_unexpected_keys_are_listed(hf):
    state = torch_reference.numpy_state(hf)
    config = torch_reference.convert(hf)[0]
    missing = dict(state)
    del missing["vision_model.layernorm.weight"]
    with pytest.raises(ValueError, match=r"missing keys \(1\): \['vision_model.layernorm.weight'\]"):
        torch_layout.from_torch(missing, config, torch_layout.HF)
    extra = {**state, "vision_model.extra.weight": np.zeros(1)}
    with pytest.raises(ValueError, match=r"unexpected keys \(1\): \['vision_model.extra.weight'\]"):
        torch_layout.from_torch(extra, config, torch_layout.HF)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def test_nvlabs_loader_runs_no_code_from_the_pickle(hf, tmp_path):
    path = tmp_path / "release.pth"
    _write_nvlabs_file(hf, path)
    ckpt = torch.load(path, weights_only=False)
    ckpt["config"] = _Evil(tmp_path / "pwned")
    torch.save(ckpt, path)
    gv.load_pretrained(path)  # loads: the config is inert data
    assert not (tmp_path / "pwned").exists()
