"""From run to paper, on one tiny run of each built-in task (quickstart, pose-digits, audio-shapes), made once
for this file: the across-tasks table shows every task; the LaTeX, CSV and Markdown tables hold exactly the
numbers of the HTML report (compared cell by cell with the page as written); the DataFrames round-trip the CSV;
every figure is also a PDF and an SVG file that parse."""
import csv
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from html.parser import HTMLParser
from pathlib import Path

import pytest

from condbench.cli import main
from condbench.reports.html import build_context, build_report, load_run
from condbench.reports.tables import slug
from condbench.runner import RunOptions, run_suite
from condbench.suites import Suite, load_suite

# (suite, its model, a few of its policies, task options that make it tiny)
BUILTIN = [("quickstart", "dit-digits", ["baseline", "tail:0.1", "random-like:tail:0.1", "drop-t"],
            {"samples_per_class": 1}),
           ("pose-digits", "xmdpt-digits", ["baseline", "tail:1.1", "random-like:tail:1.1", "drop-cond"],
            {"num_pairs": 8}),
           ("audio-shapes", "mdsgen-shapes", ["baseline", "tail:1.0", "drop-cond"], {"num_clips": 4})]


def tiny_suite(name: str, model: str, policies: list[str], task_options: dict) -> Suite:
    """The built-in suite ``name`` with a few of its policies, a few samples and 4 sampling steps."""
    suite = load_suite(name)
    return Suite(**{**suite.__dict__, "policies": policies, "task_options": task_options, "bootstrap": 10,
                    "blocks": None, "analysis": {**suite.analysis, "sweep_points": 2}, "batch_size": 10,
                    "shard_size": 10, "model_options": {model: {"num_steps": 4}}})


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("builtin-runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONDBENCH_CACHE", str(root / "cache"))  # audio-shapes writes its clips there
        for name, *settings in BUILTIN:
            run_suite(tiny_suite(name, *settings), root / name, RunOptions(log=lambda _: None))
    return [root / name for name, *_ in BUILTIN]


@pytest.fixture(scope="module")
def page(runs, tmp_path_factory) -> Path:
    return build_report(runs, tmp_path_factory.mktemp("report") / "report.html")


@pytest.fixture(scope="module")
def written(runs, tmp_path_factory) -> dict[str, Path]:
    """The tables of the three runs in every format, written by the command."""
    out = {}
    for fmt in ("latex", "csv", "markdown"):
        out[fmt] = tmp_path_factory.mktemp(fmt)
        assert main(["tables", *map(str, runs), "--format", fmt, "-o", str(out[fmt])]) == 0
    return out


# --- the page's tables as written: id -> rows of (text, second line, classes) --------------------------------

class TableReader(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[dict]]] = {}
        self.headers: dict[str, list[str]] = {}
        self.table, self.cell, self.in_sub = None, None, False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id"):
            self.table = attrs["id"]
            self.tables[self.table], self.headers[self.table] = [], []
        elif self.table and tag == "tr":
            self.tables[self.table].append([])
        elif self.table and tag in ("td", "th"):
            self.cell = {"tag": tag, "text": "", "sub": "", "cls": (attrs.get("class") or "").split()}
        elif self.cell is not None and tag == "span":
            self.in_sub = True

    def handle_endtag(self, tag):
        if tag == "table":
            self.table = None
        elif tag in ("td", "th") and self.cell is not None:
            if self.cell["tag"] == "th":
                self.headers[self.table].append(self.cell["text"])
            else:
                self.tables[self.table][-1].append(self.cell)
            self.cell = None
        elif tag == "span":
            self.in_sub = False

    def handle_data(self, data):
        if self.cell is not None:
            self.cell["sub" if self.in_sub else "text"] += data


def page_tables(page: Path) -> TableReader:
    reader = TableReader()
    reader.feed(page.read_text())
    for rows in reader.tables.values():
        rows[:] = [row for row in rows if row]  # the header row holds no td
    return reader


def number(text: str):
    """The number a shown text reads as (None for '–')."""
    if text == "–":
        return None
    return round(float(text[:-1]) / 100, len(text[:-1].partition(".")[2]) + 2) if text.endswith("%") else float(text)


def interval(sub: str) -> tuple[str, str, str]:
    """'Δ +0.123\\n[-0.200, +0.400]' -> ('+0.123', '-0.200', '+0.400')."""
    found = re.fullmatch(r"Δ (\S+)\n\[(\S+), (\S+)\]", sub)
    return found.groups()


def table2_names(runs: list[Path]) -> list[tuple[str, str, dict]]:
    """The page's id and the files' name of each run's one Table 2, with the run's results."""
    names = []
    for run in map(load_run, runs):
        task, model = slug(run.task), slug(run.results["records"][0]["model"])
        names.append((f"table2-{task}-{model}", f"table2_{task}_{model}", run.results))
    return names


# --- issue A: the across-tasks table ------------------------------------------------------------------

def test_the_across_tasks_table_shows_every_builtin_task_and_its_own_metrics(runs, page):
    reader = page_tables(page)
    headers = reader.headers["summary-table"]
    for column in ("digits: FID ↓", "pose-digits: FID (digits CNN) ↓", "pose-digits: PSNR ↑",
                   "audio-shapes: FD (shapes CNN) ↓", "audio-shapes: KL (shapes CNN) ↓",
                   "audio-shapes: IS (shapes CNN) ↑"):
        assert column in headers, headers
    assert not any("clips" in h for h in headers)  # a count, not a score
    models = {row[0]["text"] for row in reader.tables["summary-table"]}
    assert models == {"dit-digits", "xmdpt-digits", "mdsgen-shapes"}
    audio = [row for row in reader.tables["summary-table"] if row[0]["text"] == "mdsgen-shapes"]
    assert len(audio) == len(BUILTIN[2][2]) and all(c["text"] != "–" for c in audio[0][-3:])


def test_a_task_that_declares_headline_metrics_shows_those_in_its_order(runs, tmp_path):
    declared = shutil.copytree(runs[2], tmp_path / "declared", ignore=shutil.ignore_patterns("cache", "figures"))
    results = json.loads((declared / "results.json").read_text())
    results["tasks"]["audio-shapes"]["headline_metrics"] = ["kl_shapes_cnn", "fd_shapes_cnn"]
    (declared / "results.json").write_text(json.dumps(results))
    headers = [h["text"] for h in build_context([load_run(runs[0]), load_run(declared)])["summary"]["headers"]]
    assert headers[2:] == ["digits: FID ↓", "digits: IS ↑", "digits: class fidelity ↑",
                           "audio-shapes: KL (shapes CNN) ↓", "audio-shapes: FD (shapes CNN) ↓"]


# --- issue B: the tables hold the report's numbers ---------------------------------------------------------

def test_the_csv_holds_every_number_and_mark_of_the_reports_table2(runs, page, written):
    reader = page_tables(page)
    with open(written["csv"] / "table2.csv", newline="") as handle:
        rows = {(r["task"], r["model"], r["policy"], r["metric"]): r for r in csv.DictReader(handle)}
    compared = 0
    for table_id, _, results in table2_names(runs):
        metrics = list(results["records"][0]["metrics"])
        html_rows = reader.tables[table_id]
        assert [row[0]["text"] for row in html_rows] == [r["policy"] for r in results["records"]]
        for html_row, record in zip(html_rows, results["records"]):
            for key, html_cell in zip(metrics, html_row[2:]):
                row = rows.pop((record["task"], record["model"], record["policy"], key))
                assert number(html_cell["text"]) == (float(row["value"]) if row["value"] else None)
                assert row["removed"] == html_row[1]["text"] and row["n"] == str(record["num_samples"])
                assert row["protocol"] == record["protocol"]
                changes = interval(html_cell["sub"]) if html_cell["sub"] else ("", "", "")
                assert tuple(float(v) if v else None for v in (row["delta"], row["low"], row["high"])) == \
                       tuple(float(v) if v else None for v in changes)
                assert row["significance"] == next((m for m in html_cell["cls"] if m in ("better", "worse")), "")
                assert row["best"] == str("best" in html_cell["cls"])
                compared += 1
    assert rows == {} and compared == sum(len(r["records"]) * len(r["records"][0]["metrics"])
                                          for *_, r in table2_names(runs))


def markdown_rows(path: Path) -> list[list[str]]:
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines[2:]]


def latex_rows(path: Path) -> list[list[str]]:
    text = path.read_text()
    body = text[text.index("\\midrule") + len("\\midrule"):text.index("\\bottomrule")]
    return [[cell.strip() for cell in line.removesuffix("\\\\").split(" & ")]
            for line in body.strip().splitlines()]


def plain_markdown(cell: str) -> tuple[str, set[str], str]:
    """A Markdown metric cell -> (value text, marks, 'Δ .. [.., ..]')."""
    value, _, change = cell.partition("<br>")
    marks = {mark for mark, sign in (("better", "★ "), ("worse", " †"), ("best", "**")) if sign in value}
    return value.replace("★ ", "").replace(" †", "").replace("**", ""), marks, change


def plain_latex(value: str, change: str) -> tuple[str, set[str], str]:
    marks = {mark for mark, sign in (("better", "$^\\star$"), ("worse", "$^\\dagger$"), ("best", "\\textbf{"))
             if sign in value}
    value = re.sub(r"\\textbf\{(.*)\}", r"\1", value.replace("$^\\star$", "").replace("$^\\dagger$", ""))
    return value.replace("--", "–"), marks, ("Δ " + change.replace("$", "")) if change else ""


def test_latex_and_markdown_hold_the_reports_table2_cell_by_cell(runs, page, written):
    reader = page_tables(page)
    for table_id, name, _ in table2_names(runs):
        html_rows = reader.tables[table_id]
        md = markdown_rows(written["markdown"] / f"{name}.md")
        tex = latex_rows(written["latex"] / f"{name}.tex")
        assert len(md) == len(tex) == len(html_rows) > 0
        for html_row, md_row, tex_row in zip(html_rows, md, tex):
            assert md_row[0] == tex_row[0] == html_row[0]["text"]  # the policy
            assert md_row[1] == html_row[1]["text"] == tex_row[1].replace("\\%", "%")  # dims removed
            metric_cells = html_row[2:-1]  # the page's last column is seconds, left out of the paper tables
            assert len(md_row) - 2 == len(metric_cells) == (len(tex_row) - 2) // 2
            for i, html_cell in enumerate(metric_cells):
                expected = (html_cell["text"], set(html_cell["cls"]), html_cell["sub"].replace("\n", " "))
                assert plain_markdown(md_row[2 + i]) == expected
                assert plain_latex(tex_row[2 + 2 * i], tex_row[3 + 2 * i]) == expected


def test_table1_in_every_format_holds_the_reports_numbers(runs, page, written):
    reader = page_tables(page)
    with open(written["csv"] / "table1.csv", newline="") as handle:
        csv_rows = {(r["task"], r["model"]): r for r in csv.DictReader(handle)}
    for run in map(load_run, runs):
        name = slug(run.task)
        html_rows = reader.tables[f"table1-{name}"]
        md = markdown_rows(written["markdown"] / f"table1_{name}.md")
        tex = latex_rows(written["latex"] / f"table1_{name}.tex")
        assert len(html_rows) == len(md) == len(tex) == 1  # one model per run, no study rows for built-ins
        texts = [c["text"] for c in html_rows[0]]
        assert md[0] == texts and [c.replace("\\%", "%") for c in tex[0]] == texts
        row = csv_rows.pop((run.task, texts[0]))
        assert [number(t) for t in texts[1:]] == [float(v) for v in list(row.values())[2:]]
    assert csv_rows == {}


def test_the_dataframes_round_trip_the_csv(runs, written):
    pandas = pytest.importorskip("pandas")
    from condbench import results

    frame = results.load(*runs)
    assert len(frame) == sum(len(r["records"]) * len(r["records"][0]["metrics"]) for *_, r in table2_names(runs))
    assert set(frame["task"]) == {"digits", "pose-digits", "audio-shapes"}
    pandas.testing.assert_frame_equal(pandas.read_csv(written["csv"] / "table2.csv"), frame)
    pandas.testing.assert_frame_equal(pandas.read_csv(written["csv"] / "table1.csv"), results.load_table1(*runs))


def test_the_latex_tables_compile_on_their_own(written, tmp_path):
    files = sorted(written["latex"].glob("*.tex"))
    assert [f.name for f in files] == ["table1_audio_shapes.tex", "table1_digits.tex", "table1_pose_digits.tex",
                                       "table2_audio_shapes_mdsgen_shapes.tex", "table2_digits_dit_digits.tex",
                                       "table2_pose_digits_xmdpt_digits.tex"]
    for tex in files:  # the structure, with or without a TeX engine
        text = tex.read_text()
        assert text.startswith("\\documentclass") and text.rstrip().endswith("\\end{document}")
        assert "\\usepackage{booktabs}" in text
        assert [text.count(rule) for rule in ("\\toprule", "\\midrule", "\\bottomrule")] == [1, 1, 1]
        columns = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", text).group(1))
        assert all(len(row) == columns for row in latex_rows(tex)), tex.name
        assert text.count("{") - text.count("\\{") == text.count("}") - text.count("\\}")
    engine = shutil.which("pdflatex")
    if engine is None:
        pytest.skip("no pdflatex here: the structure was checked, not the compilation")
    for tex in (files[0], files[-1]):
        done = subprocess.run([engine, "-interaction=nonstopmode", "-halt-on-error", f"-output-directory={tmp_path}",
                               str(tex)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:]
        assert (tmp_path / tex.with_suffix(".pdf").name).read_bytes().startswith(b"%PDF-")


# --- figures -------------------------------------------------------------------------------------------------

FIGURES_OF_A_MODEL = ("cosine_heatmaps", "magnitudes_and_variance_of_c", "c_over_sampling_steps",
                      "cosine_condition_only_vs_c", "embedding_2d_full_head_tail")


def pdf_pages(data: bytes) -> int:
    """The page count of a PDF, read from its page tree (after checking its header, trailer and xref)."""
    assert data.startswith(b"%PDF-1.") and data.rstrip().endswith(b"%%EOF")
    offset = int(re.search(rb"startxref\s+(\d+)", data).group(1))
    assert data[offset:offset + 4] == b"xref"  # the cross-reference table is where the trailer says
    return int(re.search(rb"/Type\s*/Pages\b.*?/Count\s+(\d+)", data, re.S).group(1))


def test_every_figure_is_also_a_pdf_and_an_svg_named_for_what_it_shows(runs, page):
    text = page.read_text()
    for run_dir in runs:
        run = load_run(run_dir)
        model = run.results["records"][0]["model"].replace("-", "_")
        metrics = list(run.results["records"][0]["metrics"])
        folder = run_dir / "figures"
        stems = {p.stem for p in folder.iterdir()}
        expected = {f"{model}_{what}" for what in FIGURES_OF_A_MODEL}
        expected |= {f"{model}_{key}_vs_fraction_removed" for key in metrics if key != "clips"}
        expected |= {f"training_dynamics_{run.task}"} if "training_track" in run.results else set()
        assert stems == expected, run.task
        for stem in stems:
            assert pdf_pages((folder / f"{stem}.pdf").read_bytes()) == 1
            svg = ElementTree.parse(folder / f"{stem}.svg").getroot()
            assert svg.tag == "{http://www.w3.org/2000/svg}svg" and float(svg.get("width").removesuffix("pt")) > 100
            assert any(True for _ in svg.iter("{http://www.w3.org/2000/svg}path"))  # drawn, not empty
    assert text.count("data:image/png;base64,") >= 3 * len(FIGURES_OF_A_MODEL)  # the page still embeds PNGs


# --- bad input ------------------------------------------------------------------------------------------------

def test_tables_of_a_folder_that_is_no_run_is_one_clear_line(tmp_path, capsys):
    assert main(["tables", str(tmp_path / "nothing"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("condbench tables: error: ") and "results.json is missing" in err
    assert str(tmp_path / "nothing") in err and len(err.splitlines()) == 1 and not (tmp_path / "out").exists()
