"""What a new user meets on the command line (issue 17): typos in task options and filters, the version,
the dry run's warning about missing checkpoints, and a start-up that does not import torch for --help."""
import subprocess
import sys

import pytest

from condbench.cli import main

SUITE = "name: s\ntask: digits\nmodels: [dit-digits]\npolicies: [baseline, 'tail:0.1']\n"


def write_suite(tmp_path, extra: str = "") -> str:
    path = tmp_path / "s.yaml"
    path.write_text(SUITE + extra)
    return str(path)


@pytest.mark.parametrize("dry_run", [True, False])
def test_an_unknown_task_option_gets_did_you_mean(tmp_path, capsys, dry_run):
    suite = write_suite(tmp_path, "task_options: {samples_per_clas: 10}\n")
    assert main(["run", suite, "-o", str(tmp_path / "run")] + (["--dry-run"] if dry_run else [])) == 2
    err = capsys.readouterr().err
    assert "'samples_per_clas' is not an option of task 'digits'" in err and "Did you mean 'samples_per_class'" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.parametrize("option, value, named", [("--policies", "tail:0.3", "baseline, tail:0.1"),
                                                   ("--models", "dit-digit", "did you mean 'dit-digits'"),
                                                   ("--tasks", "imagenet", "it has digits")])
def test_filters_that_match_nothing_fail_naming_what_the_suite_has(tmp_path, capsys, dry_run, option, value, named):
    out = tmp_path / "run"
    assert main(["run", write_suite(tmp_path), "-o", str(out), option, value]
                + (["--dry-run"] if dry_run else [])) == 2
    err = capsys.readouterr().err
    assert f"{option} '{value}': not in suite 's'" in err and named in err
    assert not out.exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("condbench 0.1.0 (") and ("git " in out or "not a git checkout" in out)


def test_dry_run_warns_when_a_checkpoint_is_not_on_disk(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "my_dit.safetensors"
    suite = write_suite(tmp_path, f"model_options: {{dit-digits: {{ckpt: '{missing}'}}}}\n")
    assert main(["run", suite, "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "baseline" in captured.out
    assert "warning: no checkpoint on disk for dit-digits" in captured.err and str(missing) in captured.err


def test_the_dry_run_of_the_shipped_model_warns_about_nothing(tmp_path, capsys):
    assert main(["run", write_suite(tmp_path), "--dry-run"]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["run", "--help"]])
def test_help_and_version_do_not_import_torch(argv):
    """A behaviour, not a timing (benchmarks/test_bench_startup.py prints the times)."""
    probe = ("import sys\nfrom condbench.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
             "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'matplotlib') if m in sys.modules]\n"
             "print('HEAVY', heavy)" % (argv,))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
