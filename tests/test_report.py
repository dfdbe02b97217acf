"""The HTML report of a real (small) quickstart run, opened in headless Chromium.

Chromium is Debian's ``chromium`` (installed by .ci/run). Without it the browser tests skip locally and
fail under CI, so a CI machine that lost its browser cannot pass silently.
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from condbench.cli import main
from condbench.reports.html import ReportError, build_report
from condbench.runner import RunOptions, run_suite
from condbench.suites import load_suite

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """The quickstart suite as shipped (every policy), with fewer samples and steps so it runs in seconds."""
    suite = load_suite("quickstart")
    suite.task_options["samples_per_class"] = 3
    suite.model_options = {"dit-digits": {"num_steps": 8}}
    suite.batch_size = 16
    suite.bootstrap = 50
    out = tmp_path_factory.mktemp("quickstart")
    run_suite(suite, out, RunOptions(log=lambda _: None))
    return out, suite


@pytest.fixture(scope="module")
def report(quickstart_run, tmp_path_factory):
    run_dir, _ = quickstart_run
    return build_report([run_dir], tmp_path_factory.mktemp("report") / "report.html")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.environ.get("CI"):
        pytest.fail("headless Chromium is required under CI (.ci/run installs Debian's chromium)")
    pytest.skip("no chromium on this machine (apt-get install chromium)")


def browse(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra,
                           page.resolve().as_uri()], capture_output=True, text=True, timeout=120)


def console_errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "CONSOLE" in line and re.search(r"error|uncaught", line, re.I)]


def test_report_is_self_contained_small_and_holds_every_policy(report, quickstart_run):
    _, suite = quickstart_run
    text = report.read_text()
    assert report.stat().st_size < 20e6
    assert not re.search(r"(src|href)=['\"]https?://", text)  # no network
    from condbench.policies import parse_policy

    for spec in suite.policies:
        assert f"data-v='{parse_policy(spec).canonical()}'" in text
    for section in ("Embedding statistics (Table 1)", "Policies (Table 2)", "Samples", "Across tasks",
                    "Training dynamics", "Block diversity", "Provenance"):
        assert section in text
    assert "block CKA heatmaps" in text  # the suite's blocks probe (seed 003), beside the const-t cell (seed 004)
    assert "const-t:500" in suite.blocks["policies"] and "none: t replaced by t(T)" in text
    assert text.count("data:image/png;base64,") >= 5 + 3 + len(suite.policies) + 1


def test_report_opens_in_chromium_without_console_errors_and_is_not_blank(report, tmp_path):
    from PIL import Image

    shot = tmp_path / "shot.png"
    result = browse(report, tmp_path, "--window-size=1300,2400", f"--screenshot={shot}")
    assert shot.is_file(), result.stderr[-2000:]
    assert console_errors(result.stderr) == []
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.std() > 20 and len(np.unique(pixels)) > 50  # text, tables and figures, not an empty page


def test_the_console_error_check_catches_a_broken_page(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    result = browse(page, tmp_path, "--dump-dom")
    assert console_errors(result.stderr), result.stderr[-2000:]


def test_tables_hold_the_policies_and_sort_on_click_in_the_browser(report, quickstart_run, tmp_path):
    run_dir, suite = quickstart_run
    table = "table[id^=table2-]"  # the policy table of the only model
    # click the FID header twice (ascending, then descending) in the real page, then read the order back
    clicker = (f"<script>var th=document.querySelectorAll('{table} th')[2];th.click();"
               f"var asc=[].map.call(document.querySelectorAll('{table} tbody tr'),function(r){{return r.cells[2].getAttribute('data-v')}});"
               f"th.click();var desc=[].map.call(document.querySelectorAll('{table} tbody tr'),function(r){{return r.cells[2].getAttribute('data-v')}});"
               "document.body.setAttribute('data-sorted',JSON.stringify([asc,desc]));</script>")
    page = tmp_path / "clicked.html"
    page.write_text(report.read_text().replace("</body>", clicker + "</body>"))
    result = browse(page, tmp_path, "--dump-dom")
    assert console_errors(result.stderr) == []
    asc, desc = json.loads(re.search(r"data-sorted=\"([^\"]+)\"", result.stdout).group(1).replace("&quot;", '"'))
    assert [float(v) for v in asc] == sorted(float(v) for v in asc)
    assert [float(v) for v in desc] == sorted((float(v) for v in desc), reverse=True)
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert sorted(float(v) for v in asc) == pytest.approx(sorted(r["metrics"]["fid"] for r in records))
    assert len(asc) == len(suite.policies)


def test_report_command_and_a_missing_run(tmp_path, quickstart_run, capsys, monkeypatch):
    run_dir, _ = quickstart_run
    assert main(["report", str(run_dir), "-o", str(tmp_path / "r.html")]) == 0
    assert "report:" in capsys.readouterr().out
    copy = shutil.copytree(run_dir, tmp_path / "copy", ignore=shutil.ignore_patterns("cache"))
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(copy)]) == 0  # without -o: into the (first) run's folder, not the current one
    assert (copy / "report.html").is_file() and not (tmp_path / "report.html").exists()
    with pytest.raises(ReportError, match="results.json is missing"):
        build_report([tmp_path / "no-run"], tmp_path / "x.html")


# the widest Table 2 a real task gives: ImageNet's metric set beside the digits run's (a layout check only)
IMAGENET_METRICS = {"sfid": (5.3, 0.8), "precision": (0.80, 0.012), "recall": (0.62, 0.015), "clip_score": (29.7, 0.09)}


def widened_run(run_dir: Path, out: Path) -> Path:
    """The quickstart run relabelled as an ImageNet run of repa-sit-xl-2 with four more metrics and their
    paired intervals (values of ImageNet's magnitudes), for checking the page's width, not any number."""
    out.mkdir()
    results = json.loads((run_dir / "results.json").read_text())
    for rec in results["records"]:
        rec["model"], rec["task"] = "repa-sit-xl-2", "imagenet"
        for key, (value, spread) in IMAGENET_METRICS.items():
            rec["metrics"][key] = value * (1 + rec["metrics"]["fid"] / 100)
            if rec["policy"] != "baseline":
                rec["paired_vs_baseline"][key] = {"delta": -spread, "ci95": [-3 * spread, 2 * spread], "resamples": 50}
    results["task"]["task"] = "imagenet"
    for key in ("analysis", "models"):
        results[key] = {"repa-sit-xl-2": results[key]["dit-digits"]}
    results["grids"] = {}
    (out / "results.json").write_text(json.dumps(results))
    shutil.copy(run_dir / "analysis_dit_digits.npz", out / "analysis_repa_sit_xl_2.npz")
    return out


OVERFLOW_PROBE = ("<script>var wide=[].filter.call(document.querySelectorAll('.scroll'),function(e){"
                  "return e.scrollWidth>e.clientWidth}).map(function(e){return e.firstChild.id});"
                  "document.body.setAttribute('data-overflow',JSON.stringify({tables:wide,"
                  "page:document.documentElement.scrollWidth>window.innerWidth}));</script>")


@pytest.fixture(scope="module")
def wide_report(quickstart_run, tmp_path_factory):
    run_dir, _ = quickstart_run
    folder = tmp_path_factory.mktemp("wide")
    return build_report([run_dir, widened_run(run_dir, folder / "imagenet")], folder / "report.html")


@pytest.mark.parametrize("width", [1280, 1400])
def test_every_table_fits_the_window_without_scrolling(wide_report, tmp_path, width):
    text = wide_report.read_text()
    assert "The seed study's numbers for REPA (SiT-XL/2)" in text and "study: repa-sit-xl-2" in text
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", OVERFLOW_PROBE + "</body>"))
    result = browse(probe, tmp_path, f"--window-size={width},2000", "--dump-dom")
    found = json.loads(re.search(r"data-overflow=\"([^\"]+)\"", result.stdout).group(1).replace("&quot;", '"'))
    assert found == {"tables": [], "page": False}


def test_report_shows_protocol_caution_and_commit_and_marks_only_significant_changes(quickstart_run, report):
    from condbench.reports.html import build_context, load_run
    from condbench.reports.tables import significance

    run_dir, suite = quickstart_run
    text = report.read_text()
    for label in ("sampler", "guidance", "bootstrap", "metric protocol", "git commit"):
        assert f"<dt>{label}</dt>" in text
    assert f"{suite.bootstrap} paired resamples" in text and "classifier-free, scale 1.5" in text
    assert "digits CNN" in text and "study: " not in text  # no study numbers for the digits model
    git = json.loads((run_dir / "results.json").read_text())["environment"]["git"]
    assert (git["commit"] if git else "not a git checkout") in text
    run = load_run(run_dir)
    table = build_context([run])["tasks"][0]["models"][0]["table2"]
    keys = list(run.results["records"][0]["metrics"])
    for row, rec in zip(table["rows"], run.results["records"]):
        for key, cell in zip(keys, row["cells"][2:]):
            paired = rec["paired_vs_baseline"].get(key)
            assert ("better" in cell["cls"].split()) == (significance(paired, "lower" if key == "fid" else "higher")
                                                         == "better"), (rec["policy"], key)
