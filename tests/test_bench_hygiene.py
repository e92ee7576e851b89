"""Benchmark hygiene: the contention verdict, the refusal to record contended runs, the
comparison with the committed run, and the READMEs' tables generated from the JSON."""
import json

import pytest

from experiments.benchmarks import hygiene, tables
from input_pipeline import cli


class FakeLoad:
    def __init__(self, share):
        self.share = share

    def report(self):
        return {"wall_s": 10.0, "outside_cpu_s": None, "outside_share": self.share}


def test_outside_share_is_other_processes_cpu_over_the_machine():
    # 10 s on 2 cores = 20 CPU-s; the machine was busy 17 CPU-s, 15 of them ours.
    report = hygiene.outside_report(wall_s=10.0, own_cpu_s=15.0, busy_cpu_s=17.0, cpus=2)
    assert report["outside_cpu_s"] == 2.0
    assert report["outside_share"] == 0.1
    # Ours can exceed the machine's count by a tick's rounding: never negative.
    assert hygiene.outside_report(10.0, 15.5, 15.0, 2)["outside_share"] == 0.0


@pytest.mark.parametrize("share, contended", [(0.0, False), (0.1, False), (0.1001, True),
                                              (0.48, True), (None, True)])
def test_contended_above_ten_percent_or_unmeasured(share, contended):
    assert hygiene.is_contended(share) is contended


def test_spread_of_repeated_figures():
    assert hygiene.spread([3.0, 1.0, 2.0, 10.0]) == {"min": 1.0, "median": 2.5, "max": 10.0,
                                                     "runs": 4}


def test_finish_refuses_a_contended_run_into_results_but_writes_elsewhere(tmp_path):
    target = hygiene.RESULTS / "never_written_by_this_test.json"
    assert hygiene.finish({"rows": []}, FakeLoad(0.3), target, False, 5) == cli.USAGE_ERROR
    assert not target.exists()
    # Three repeats and an idle machine would be accepted; two are not.
    assert hygiene.finish({}, FakeLoad(0.01), target, False, 2) == cli.USAGE_ERROR
    assert not target.exists()
    elsewhere = tmp_path / "run.json"
    assert hygiene.finish({"rows": []}, FakeLoad(0.3), elsewhere, False, 5) == cli.OK
    written = json.loads(elsewhere.read_text())
    assert written["contended"] is True and written["outside_load"]["outside_share"] == 0.3


def test_allow_contended_records_the_run_and_its_verdict(tmp_path):
    out = tmp_path / "x.json"
    assert hygiene.finish({}, FakeLoad(0.3), out, False, 5, record=tmp_path) == cli.USAGE_ERROR
    assert hygiene.finish({}, FakeLoad(0.3), out, True, 5, record=tmp_path) == cli.OK
    assert json.loads(out.read_text())["contended"] is True


def _all(rows):
    return {"benchmarks": {"train_speed": {"rows": [{"name": n, **r} for n, r in rows.items()]},
                           "eval_speed": {"runs": {"default devices": {"images_per_s": 1.5}}}}}


def test_moved_names_figures_beyond_fifteen_percent():
    old = _all({"full": {"ours_s_per_step": 3.0, "speed_up": 0.94, "ours_times": [3.0]}})
    new = _all({"full": {"ours_s_per_step": 2.0, "speed_up": 1.0, "ours_times": [2.0]}})
    new["benchmarks"]["eval_speed"]["runs"]["default devices"]["images_per_s"] = 1.8
    new["benchmarks"]["input_speed"] = {"rows": [{"name": "new row", "images_per_s": 1.0}]}
    assert hygiene.moved(old, new) == [
        "eval_speed/default devices/images_per_s: 1.5 -> 1.8 (+20%)",
        "train_speed/full/ours_s_per_step: 3 -> 2 (-33%)"]
    assert hygiene.moved(old, old) == []


def test_committed_readme_tables_are_generated_from_the_committed_json():
    for readme in tables.READMES:
        text = readme.read_text()
        assert "<!-- table: " in text, readme
        assert tables.render(text, hygiene.RESULTS) == text, (
            f"{readme}: run python -m experiments.benchmarks.tables --write_tables")


def test_an_unknown_table_name_is_an_error():
    with pytest.raises(ValueError, match="unknown generated table 'nope'"):
        tables.render("<!-- table: nope -->\n<!-- end table -->", hygiene.RESULTS)
