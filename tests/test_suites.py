"""Suites are checked against a typed schema before any work; `condbench validate` says what is wrong."""
import pytest

from condbench.cli import main
from condbench.suites import Suite, SuiteError, load_suite

GOOD = {"name": "s", "task": "digits", "models": "[dit-digits]", "policies": "[baseline, 'tail:0.05']"}


def write(tmp_path, **changes):
    """A suite file with GOOD's keys, some replaced (value None drops the key); values are YAML text."""
    lines = [f"{k}: {v}" for k, v in {**GOOD, **changes}.items() if v is not None]
    path = tmp_path / "suite.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("changes, expected", [
    ({"policies": "baseline"}, "key 'policies': expected a list (in YAML: [a, b] or one '- item' per line), "
                               "got str 'baseline'"),
    ({"models": "dit-digits"}, "key 'models': expected a list"),
    ({"seed": "[1, 2]"}, "key 'seed': expected an integer, got list [1, 2]"),
    ({"batch_size": "2.5"}, "key 'batch_size': expected an integer, got float 2.5"),
    ({"batch_size": "abc"}, "key 'batch_size': expected an integer, got str 'abc'"),
    ({"batch_size": "0"}, "key 'batch_size': Input should be greater than or equal to 1, got 0"),
    ({"task_options": "[1]"}, "key 'task_options': expected a mapping (key: value lines), got list [1]"),
    ({"model_options": '"x"'}, "key 'model_options': expected a mapping (key: value lines), got str 'x'"),
    ({"model_options": "{dit-digits: [1]}"}, "key 'model_options.dit-digits': expected a mapping"),
    ({"analysis": "{taus: [0.1], sweep: 3}"}, "key 'analysis.sweep': unknown key"),
    ({"keep_samples": "maybe"}, "key 'keep_samples': expected true or false, got str 'maybe'"),
    ({"task": "5"}, "key 'task': expected a task name or a list of them, got int 5"),
    ({"policies": "[baseline, 7]"}, "key 'policies[1]': expected a string, got int 7"),
    ({"policies": "['tail:0.1']"}, "key 'policies': the baseline policy must be included"),
    ({"policies": "[baseline, 'tail:0.1@sometimes']"}, "key 'policies': invalid policy spec 'tail:0.1@sometimes'"),
    ({"name": None}, "key 'name': required key is missing"),
    ({"colour": "red"}, "key 'colour': unknown key; the keys of a suite are name, task, models"),
    ({"models": "[dit-digit]"}, "key 'models': unknown model 'dit-digit'. Did you mean 'dit-digits'"),
    ({"model_options": "{dit-xl-2: {num_steps: 2}}"}, "'model_options.dit-xl-2': 'dit-xl-2' is not one of"),
])
def test_each_bad_suite_is_refused_naming_the_file_the_key_and_the_expected_type(tmp_path, changes, expected):
    path = write(tmp_path, **changes)
    with pytest.raises(SuiteError) as error:
        load_suite(str(path))
    assert f"{path}: " in str(error.value) and expected in str(error.value)


def test_invalid_yaml_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: s\ntask: digits\nmodels: [dit-digits\npolicies: [baseline]\n")
    with pytest.raises(SuiteError, match=rf"{path}, line \d+: invalid YAML"):
        load_suite(str(path))
    path.write_text("- just\n- a list\n")
    with pytest.raises(SuiteError, match="a suite is a YAML mapping"):
        load_suite(str(path))


def test_a_suite_file_in_another_encoding_names_the_file_the_line_and_the_fix(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: s\ntask: digits\n# caf\u00e9\nmodels: [dit-digits]\n".encode("latin-1"))
    with pytest.raises(SuiteError, match=rf"{path}, line 3: .*not UTF-8.*save the file as UTF-8"):
        load_suite(str(path))


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, seed="[1, 2]", batch_size="abc", policies="baseline")
    with pytest.raises(SuiteError) as error:
        load_suite(str(path))
    assert len(str(error.value).splitlines()) == 3


def test_built_in_suites_are_valid_and_the_suite_object_keeps_its_attributes():
    for name in ("quickstart", "table2", "imagenet"):
        suite = load_suite(name)
        assert "baseline" in suite.policies and suite.tasks and suite.batch_size >= 1
    suite = Suite(name="x", task="digits", models=["dit-digits"], policies=["baseline"], microbatch=8,
                  model_options={"dit-digits": {"num_steps": 4}})
    assert suite.adapter_options("dit-digits") == {"microbatch": 8, "num_steps": 4}
    assert Suite(**{**suite.__dict__, "name": "y"}).name == "y"


def test_validate_command(tmp_path, capsys):
    assert main(["validate", "quickstart"]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1 and "valid suite 'quickstart'" in out and "15 policies" in out
    path = write(tmp_path, batch_size="2.5", model_options='"x"')
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "batch_size" in err and "model_options" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["imagenet", "table2"])
def test_suites_that_promise_a_control_for_every_tail_cell_have_it(name):
    """imagenet.yaml and table2.yaml say every tail cell has its random-like control (same threshold and
    schedule): each one is in the suite."""
    from condbench.policies import parse_policy

    policies = {parse_policy(p).key() for p in load_suite(name).policies}
    tails = [p for p in load_suite(name).policies if parse_policy(p).action.kind == "tail"]
    assert tails and all(parse_policy(f"random-like:{t}").key() in policies for t in tails)
