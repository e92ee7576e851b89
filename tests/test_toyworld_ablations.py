"""The ablation runner's summary: statistics over seeds, and columns a variant lacks."""
import pytest

from experiments.toyworld import ablations


def test_summary_is_mean_std_min_max_over_seeds_per_variant():
    rows = [
        {"name": "groupvit", "mIoU": 10.0, "top1": 80.0, "top1_everywhere_mIoU": 9.0,
         "oracle_mIoU": 30.0, "groups_used": 2.0},
        {"name": "vit_pixelwise", "mIoU": 5.0, "top1": 60.0, "top1_everywhere_mIoU": 4.0,
         "oracle_mIoU": None, "groups_used": None},
        {"name": "groupvit", "mIoU": 14.0, "top1": 90.0, "top1_everywhere_mIoU": 11.0,
         "oracle_mIoU": 34.0, "groups_used": 3.0},
    ]
    groupvit, vit = ablations.summarise(rows)
    assert groupvit["name"] == "groupvit" and groupvit["seeds"] == 2
    assert groupvit["mIoU_mean"] == 12.0 and groupvit["mIoU_std"] == 2.0
    assert (groupvit["mIoU_min"], groupvit["mIoU_max"]) == (10.0, 14.0)
    assert groupvit["oracle_mIoU_mean"] == 32.0 and groupvit["groups_used_std"] == 0.5
    assert vit["seeds"] == 1 and vit["mIoU_std"] == 0.0
    assert "oracle_mIoU_mean" not in vit
    assert ablations._cell(vit, "oracle_mIoU") == "-"
    assert ablations._cell(groupvit, "mIoU") == "12.0 ± 2.0"


@pytest.mark.parametrize("name", sorted(ablations.VARIANTS))
def test_every_variant_changes_a_valid_model_config(name):
    from groupvit_jax.models.config import GroupViTConfig
    from groupvit_jax.train.config_files import load_config
    from tests.config_files import ROOT

    config = load_config(ROOT / "experiments/toyworld/config.py")
    change, evaluations = ablations.VARIANTS[name]
    change(config)
    model = GroupViTConfig.from_dict(config.model.to_dict())   # validates the architecture
    assert sum(model.vision.depths) == 5   # every variant keeps the main job's depth
    assert (config.data.num_prompts > 0) == model.multi_label_scale == (name != "no_multilabel")
    assert model.vision.hard_assignment == (name != "soft")
    assert evaluations and all(k >= 0 for _, k in evaluations)


def test_results_file_is_a_running_log_rerun_rows_replace_old_ones():
    old = [{"name": "a", "seed": 0, "steps": 300, "mIoU": 1.0},
           {"name": "a", "seed": 1, "steps": 300, "mIoU": 2.0},
           {"name": "b", "seed": 0, "steps": 300, "mIoU": 3.0}]
    new = [{"name": "a", "seed": 1, "steps": 300, "mIoU": 5.0},
           {"name": "a", "seed": 1, "steps": 900, "mIoU": 6.0}]
    merged = ablations.merge_runs(old, new)
    assert [(r["name"], r["seed"], r["steps"], r["mIoU"]) for r in merged] == [
        ("a", 0, 300, 1.0), ("b", 0, 300, 3.0), ("a", 1, 300, 5.0), ("a", 1, 900, 6.0)]
    table = ablations.summarise(merged)
    assert [(e["name"], e["steps"], e["seeds"]) for e in table] == [
        ("a", 300, 2), ("b", 300, 1), ("a", 900, 1)]
