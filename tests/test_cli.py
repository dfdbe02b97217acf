"""The command line as a user types it."""
import json

from condbench.cli import main


def test_list_models_shows_c_dim_sampler_and_checkpoint_source(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("dit-digits"))
    assert " 96 " in line and "DDPM" in line and "shipped" in line


def test_list_policies_prints_the_grammar(capsys):
    assert main(["list", "policies"]) == 0
    assert "random-like:ACTION" in capsys.readouterr().out


def test_analyze_writes_json_and_arrays(tmp_path, capsys):
    assert main(["analyze", "--task", "digits", "--sweep-points", "4", "-o", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "analysis.json").read_text())
    assert summary["c"]["num_conditions"] == 10 and len(summary["sweep"]) == 4
    assert (tmp_path / "analysis.npz").is_file()
    assert "nPR=" in capsys.readouterr().out


def test_unknown_model_suggests_the_closest_name(tmp_path, capsys):
    assert main(["analyze", "--model", "dit-digit", "-o", str(tmp_path)]) == 2
    assert "Did you mean 'dit-digits'" in capsys.readouterr().err


def test_bad_policy_in_a_suite_is_reported_with_the_grammar(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\ntask: digits\nmodels: [dit-digits]\npolicies: [baseline, 'tail:0.1@sometimes']\n")
    assert main(["run", str(suite), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "unknown schedule 'sometimes'" in err and "Policy grammar" in err
    assert not (tmp_path / "run").exists()


def test_missing_checkpoint_on_the_command_line(tmp_path, capsys):
    assert main(["analyze", "--ckpt", str(tmp_path / "gone.pt"), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "gone.pt" in err and "How to provide it" in err
