"""Every binary's command line: absl flags, and one exit code per kind of failure
(input_pipeline/cli.py): 2 for a usage error, 3 for an input that cannot be read."""
import importlib

import pytest
from absl import flags

from input_pipeline import cli

# module -> (a usage error: a required flag left out, or a bad value where no flag is
# required; flags naming an input that does not exist, "{tmp}" the test's folder, or
# None for a benchmark that reads no input).
BINARIES = {
    "groupvit_jax.train.__main__": (["--config=configs/gcc_yfcc_2stage.py"],
                                    ["--config={tmp}/missing.py:runlocal", "--workdir={tmp}/w"]),
    "groupvit_jax.train.export": (["--out={tmp}/e"], ["--workdir={tmp}/missing", "--out={tmp}/e"]),
    "groupvit_jax.checkpoints.convert_weights": (["--src={tmp}/a.pth"],
                                                 ["--src={tmp}/missing.pth", "--dst={tmp}/o"]),
    "groupvit_jax.evaluation.eval_seg": (
        ["--checkpoint={tmp}/c", "--data_dir={tmp}"],
        ["--checkpoint={tmp}/c", "--dataset=voc", "--data_dir={tmp}/missing"]),
    "groupvit_jax.evaluation.eval_cls": (
        ["--data_dir={tmp}"], ["--checkpoint={tmp}/c", "--data_dir={tmp}/missing"]),
    "groupvit_jax.evaluation.demo": (
        ["--checkpoint={tmp}/c", "--image={tmp}/i.jpg", "--out={tmp}/d"],
        ["--checkpoint={tmp}/c", "--image={tmp}/missing.jpg", "--classes=cat", "--out={tmp}/d"]),
    "groupvit_jax.evaluation.coco_object": ([], ["--coco_dir={tmp}/missing"]),
    "input_pipeline.convert": (["--input={tmp}/a.tar", "--out={tmp}/o"],
                               ["--input={tmp}/missing/*.tar", "--format=webdataset",
                                "--out={tmp}/o"]),
    "input_pipeline.train_sentencepiece": (["--data={tmp}", "--out={tmp}/sp"],
                                           ["--data={tmp}/missing", "--vocab_size=10",
                                            "--out={tmp}/sp"]),
    "experiments.toyworld.main": (["--config.total_steps=many"],
                                  ["--config={tmp}/missing.py", "--workdir={tmp}/w"]),
    "experiments.toyworld.ablations": (["--only=groupvit,nonsense"],
                                       ["--config={tmp}/missing.py", "--workdir={tmp}/w"]),
    "experiments.toyworld.world.generate": (["--train=2"],
                                            ["--out={tmp}/a_file/missing", "--train=2",
                                             "--eval=2", "--workers=1"]),
    "experiments.benchmarks.input_speed": (["--steps=0"], ["--data={tmp}/missing"]),
    "experiments.benchmarks.reader_speed": (["--records=0"], ["--data={tmp}/missing"]),
    "experiments.benchmarks.eval_speed": (["--images=0"], None),
    "experiments.benchmarks.augment_speed": (["--batches=0"], None),
    "experiments.benchmarks.model_speed": (["--repeats=0"], None),
    "experiments.benchmarks.train_speed": (["--repeats=0"], None),
    "experiments.benchmarks.run_all": (["--only=model_speed,nonsense"], None),
}


def _argv(module: str, args: list[str], tmp) -> list[str]:
    return [module, *(a.format(tmp=tmp) for a in args)]


@pytest.mark.parametrize("module", sorted(BINARIES))
def test_usage_error_is_2(module, tmp_path, capsys):
    binary = importlib.import_module(module)
    assert binary.main(_argv(module, BINARIES[module][0], tmp_path)) == cli.USAGE_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --") or err.startswith("error: flag --"), err
    assert len(err.splitlines()) == 1, err
    # Flags are absl's, and a stray positional argument is a usage error too.
    assert binary.main([module, "--no_such_flag=1"]) == cli.USAGE_ERROR
    assert "no_such_flag" in capsys.readouterr().err
    assert binary.main([module, "positional"]) == cli.USAGE_ERROR
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.parametrize("module", sorted(m for m, (_, path) in BINARIES.items() if path))
def test_missing_input_is_3_and_named(module, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    binary = importlib.import_module(module)
    assert binary.main(_argv(module, BINARIES[module][1], tmp_path)) == cli.DATA_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(tmp_path) in err and "missing" in err, err
    assert len(err.splitlines()) == 1, err


def test_a_positional_argument_is_named(capsys):
    from experiments.benchmarks import run_all
    assert run_all.main(["run_all", "--quick", "model_speed"]) == cli.USAGE_ERROR
    assert "unexpected argument 'model_speed'" in capsys.readouterr().err


def test_help_lists_the_flags(capsys):
    from groupvit_jax.evaluation import eval_cls
    assert eval_cls.main(["eval_cls", "--help"]) == cli.OK
    out = capsys.readouterr().out
    assert out.startswith("Zero-shot ImageNet-style classification")
    assert "--jax_distributed" in out and "--checkpoint" in out


def test_the_program_name_comes_first():
    from groupvit_jax.evaluation import eval_cls
    with pytest.raises(TypeError, match="program name"):
        eval_cls.main(["--checkpoint=c", "--data_dir=d"])


def test_flags_of_one_run_do_not_leak_into_the_next(tmp_path, capsys):
    from groupvit_jax.train import export
    assert export.main(["export", f"--workdir={tmp_path}", f"--out={tmp_path}/e"]) == 3
    assert export.main(["export", f"--out={tmp_path}/e"]) == 2  # --workdir not remembered
    assert "--workdir" in capsys.readouterr().err


def test_failures_map_to_their_codes(tmp_path, capsys):
    def define(fv):
        flags.DEFINE_string("x", "", "", flag_values=fv)

    def raising(error):
        def body(_):
            raise error
        return body
    cases = [(cli.UsageError("--x: too big"), 2, "error: --x: too big"),
             (FileExistsError(17, "File exists", "/a/b"), 3, "error: /a/b: File exists"),
             (PermissionError(13, "Permission denied", "/a/c"), 3, "error: /a/c: Permission denied"),
             (IsADirectoryError(21, "Is a directory", "/a"), 3, "error: /a: Is a directory"),
             (ValueError("/a/d: not a checkpoint"), 3, "error: /a/d: not a checkpoint")]
    for error, code, message in cases:
        assert cli.run(["prog"], define, raising(error)) == code
        assert capsys.readouterr().err == message + "\n"
    (tmp_path / "bad.json").write_text("{")
    assert cli.run(["prog"], define, lambda _: cli.read_json(tmp_path / "bad.json")) == 3
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'bad.json'}: not valid JSON")
    with pytest.raises(RuntimeError):  # a bug: the traceback, exit code 1 from Python
        cli.run(["prog"], define, raising(RuntimeError("bug")))
    assert cli.run(["prog", "--x=1"], define, lambda args: None) == cli.OK


def test_config_overrides_are_read_from_the_argv_parsed():
    def define(fv):
        cli.define_config_file(fv, "experiments/toyworld/config.py")

    got = []
    argv = ["prog", "--config=experiments/toyworld/config.py", "--config.total_steps=7"]
    assert cli.run(argv, define, lambda args: got.append(cli.config_value(args))) == 0
    assert got[0].total_steps == 7
