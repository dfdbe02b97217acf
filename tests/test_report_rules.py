"""The rules behind the report's marks and reference numbers: significance, best values and ties, what
drop-t/drop-cond remove, the study's numbers only for the matching model, the log axis, PCA's explained
variance and the git commit in provenance. Pure functions on hand-written records: no run needed."""
import subprocess

import numpy as np
import pytest

from condbench.provenance import git_revision
from condbench.reports import html, paper_reference, plots, tables


def record(policy, fid=None, paired=None, **extra):
    return {"policy": policy, "metrics": {"fid": fid, **extra}, "paired_vs_baseline": paired or {},
            "dims_removed": 0.0, "dims_removed_fraction": 0.0, "num_samples": 100}


@pytest.mark.parametrize("interval, direction, expected", [
    ((-0.5, 0.4), "lower", None),        # tail:0.2's FID in the issue: the interval holds 0
    ((0.0, 0.0), "higher", None),        # no change at all
    ((-0.5, -0.1), "lower", "better"), ((0.1, 0.5), "lower", "worse"),
    ((0.1, 0.5), "higher", "better"), ((-0.5, -0.1), "higher", "worse"),
    ((-0.5, -0.1), None, None),          # a spread such as IS std has no better direction
])
def test_a_change_is_significant_only_when_its_interval_excludes_zero(interval, direction, expected):
    assert tables.significance({"delta": sum(interval) / 2, "ci95": list(interval)}, direction) == expected


def test_tied_best_values_are_all_best_and_a_row_equal_to_the_baseline_is_not():
    records = [record("baseline", 10.0), record("a", 9.0), record("b", 9.00001), record("c", 9.5)]
    assert tables.best_policies(records, "fid") == {"a", "b"}  # equal at the 4 decimals shown
    tied_with_baseline = [record("baseline", class_fidelity=1.0)] + [record(p, class_fidelity=1.0) for p in "abcd"]
    assert tables.best_policies(tied_with_baseline, "class_fidelity") == set()
    worse = [record("baseline", 10.0), record("a", 11.0), record("b", 12.0)]
    assert tables.best_policies(worse, "fid") == set()
    assert tables.best_policies([record("baseline", 1.0), record("a", 0.5, is_std=0.1)], "is_std") == set()


def test_metric_cells_carry_the_marks_and_the_interval():
    paired = {"fid": {"delta": -0.8, "ci95": [-1.2, -0.3]}}
    cell = html.metric_cell(record("tail:0.1", 9.2, paired), "fid", {"tail:0.1"})
    assert cell["cls"].split() == ["best", "better"] and cell["sub"] == "Δ -0.800\n[-1.200, -0.300]"
    unsure = html.metric_cell(record("tail:0.2", 9.0, {"fid": {"delta": -1.0, "ci95": [-2.0, 0.5]}}), "fid", set())
    assert unsure["cls"] == ""


def test_drop_policies_say_which_part_of_c_they_remove():
    assert html.removed_cell(record("drop-t"))["text"] == "t, the timestep part"
    assert html.removed_cell(record("drop-cond"))["text"] == "y, the condition part"
    tail = dict(record("tail:0.1"), dims_removed=43.0, dims_removed_fraction=43 / 96)
    assert html.removed_cell(tail)["text"] == "43.0 (45%)"
    assert "both guidance branches" in html.TABLE2_NOTE and "s(τ)·d" in html.TABLE2_NOTE


def test_the_studys_numbers_appear_only_for_the_matching_model():
    records = [record("baseline", 7.0), record("tail:0.01", 7.1)]
    assert html.paper_table2("dit-digits", records) is None
    assert html.paper_table2("dit-xl-2", records) is None  # Table 1 numbers only
    repa = html.paper_table2("repa-sit-xl-2", records)
    first = repa["table"]["rows"][0]["cells"]
    assert first[0]["text"] == "baseline" and first[2]["text"] == "7.1694" and "Table 2" in first[2]["title"]
    assert "100 samples per policy, the study 5,000" in repa["caution"]
    pose = html.paper_table2("xmdpt-l-2", records)
    assert [c["text"] for c in pose["table"]["rows"][1]["cells"][2:6]] == ["18.6692", "0.6792", "0.1675", "17.328"]


def test_every_reference_number_names_its_table():
    for model, paper in paper_reference.MODELS.items():
        refs = list(paper.table1.values()) + [r for row in paper.table2 for r in row.metrics.values()]
        assert refs, model
        assert all(r.source.startswith("Table ") for r in refs), model
    assert paper_reference.MODELS["xmdpt-l-2"].table1["npr"].value == 0.4842
    assert paper_reference.MODELS["mdsgen-b-2"].table1["cosine"].value == 0.9999


def test_builtin_and_plugin_tasks_say_they_are_not_comparable_to_the_study():
    assert "digits CNN" in paper_reference.comparability_note("digits")
    assert "not comparable" in paper_reference.comparability_note("my-plugin-task")
    assert paper_reference.comparability_note("imagenet") is None


def test_the_metric_axis_is_logarithmic_only_for_wide_positive_ranges():
    assert plots.log_axis([10.0, 14.0, 294.0]) and not plots.log_axis([10.0, 14.0, 20.0])
    assert not plots.log_axis([-1.0, 50.0]) and not plots.log_axis([])


def test_pca_axes_report_the_share_of_variance_they_explain():
    rng = np.random.default_rng(0)
    data = rng.normal(size=(12, 6)) * np.array([5.0, 2.0, 1.0, 0.5, 0.2, 0.1])
    points, explained = plots._project(data, "PCA", 0)
    total = ((data - data.mean(0)) ** 2).sum()
    assert explained == pytest.approx([(points[:, 0] ** 2).sum() / total, (points[:, 1] ** 2).sum() / total])
    assert explained[0] > explained[1] > 0


def test_provenance_names_the_git_commit_or_says_there_is_none(tmp_path):
    assert git_revision(tmp_path) is None
    assert html.git_text({"git": None}).startswith("not a git checkout")
    assert html.git_text({}).startswith("not recorded")
    here = git_revision()
    if here is None:
        pytest.skip("condbench runs from an installed package here, not a git checkout")
    head = subprocess.run(["git", "-C", str(html.__file__.rsplit("/", 1)[0]), "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    assert here["commit"] == head and html.git_text({"git": here}).startswith(head)


def test_the_protocol_box_names_the_power_cosine_guidance_schedule():
    """MDT / X-MDPT / MDSGen scale guidance by t: the box must not read as a constant scale."""
    from condbench.reports.html import guidance_text

    assert guidance_text({"cfg_scale": 2.0, "scale_pow": 0.01}).startswith(
        "classifier-free, power-cosine schedule (pow 0.01) up to scale 2")
    assert guidance_text({"cfg_scale": 1.5, "cfg_channels": 3}).startswith("classifier-free, scale 1.5, on the first 3")
    assert guidance_text({"cfg_scale": 1.0}).startswith("none")
