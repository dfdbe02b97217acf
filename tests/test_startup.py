"""Issue 17, start-up: ``list``, ``validate`` and the missing-files preflight answer without importing torch (a
behaviour, not a timing: benchmarks/test_bench_startup.py prints the times), and the missing-files message ends
with the suite lines and variables that provide every missing file."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from condbench.cli import main
from condbench.preflight import MissingInputsError, check_inputs
from condbench.registry import MODELS
from condbench.suites import load_suite, suite_path

HEAVY = ("torch", "diffusers", "transformers", "torchvision", "scipy", "sklearn", "numpy")
# Installed plugins are left out: listing a plugin imports its module, which may import torch (the example
# plugin does); what is checked here is condbench's own start-up.
PROBE = """import json, sys
from condbench import registry
registry._plugins_loaded = True
from condbench.cli import main
code = main(json.loads(sys.argv[1]))
print("HEAVY", json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))), code)
"""


def run_probe(argv: list[str], env: dict) -> tuple[list[str], int, str, str]:
    """``condbench ARGV`` in a fresh interpreter: the heavy packages it imported, its exit code, stdout, stderr."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env})
    marker = next((line for line in done.stdout.splitlines() if line.startswith("HEAVY ")), None)
    assert marker is not None, done.stdout[-2000:] + done.stderr[-2000:]
    _, heavy, code = marker.split(" ", 2)
    return json.loads(heavy), int(code), done.stdout, done.stderr


@pytest.fixture
def offline_env(tmp_path) -> dict:
    return {"CONDBENCH_CACHE": str(tmp_path / "empty"), "CONDBENCH_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
            "TORCH_HOME": str(tmp_path / "torch")}


@pytest.mark.parametrize("argv, expected", [
    (["list"], ["dit-xl-2", "1152", "sd3.5-large", "2432", "imagenet", "suites:", "policy grammar"]),
    (["list", "models"], ["dit-digits", "96", "xmdpt-digits", "mdsgen-shapes", "uvit-h-2", "xmdpt-l-2", "1024"]),
    (["validate", "quickstart"], ["valid suite 'quickstart'"]),
    (["validate", "imagenet"], ["valid suite 'imagenet': task imagenet, 7 model(s)"]),
])
def test_list_and_validate_import_no_torch(argv, expected, offline_env):
    heavy, code, out, err = run_probe(argv, offline_env)
    assert heavy == [] and code == 0, (heavy, code, err[-2000:])
    for text in expected:
        assert text in out, text


def test_the_missing_files_preflight_imports_no_torch(tmp_path, offline_env):
    """``condbench run imagenet`` offline with an empty cache names every missing file, then stops: no torch."""
    heavy, code, _, err = run_probe(["run", "imagenet", "-o", str(tmp_path / "run")], offline_env)
    assert heavy == [] and code == 2, (heavy, code, err[-2000:])
    for needed in ("VIRTUAL_imagenet256_labeled.npz", "weights-inception-2015-12-05-6726825d.pth",
                   "openai/clip-vit-base-patch16", "resnet50-11ad3fa6.pth", "DiT-XL-2-256x256.pt",
                   "autoencoder_kl_ema.pth", "vavae-imagenet256-f16d32-dinov2.pt", "To provide them all"):
        assert needed in err, needed
    assert not (tmp_path / "run").exists() and not (tmp_path / "empty").exists()


@pytest.mark.parametrize("suite, needed", [
    ("pose", ["test_pairs.txt", "diffuser_finetune_vae", "dinov2_vitb14_pretrain.pth", "dinov2_vitg14_pretrain.pth",
              "train_256x256_pngs", "inception_v3_google-0cc3c7bd.pth", "alexnet-owt-7be5be79.pth",
              "XMDPT_L_2/ema_0.9999_300000.pt"]),
    ("audio", ["vggsound.csv", "cavp_epoch66.ckpt", "vggish-10086976.pth", "Cnn14_16k_mAP=0.438.pth",
               "mdsgen_audioldm.pt", "cvssp/audioldm-s-full-v2"]),
    ("text", ["captions_val2017.json", "val2017", "weights-inception-2015-12-05-6726825d.pth",
              "openai/clip-vit-large-patch14", "stabilityai/stable-diffusion-3.5-large"]),
])
def test_every_tasks_missing_files_preflight_imports_no_torch(tmp_path, offline_env, suite, needed):
    """The users' `tox -e imagenet,pose,audio` (and text) with no files: each names every file, ends with the lines
    that provide them all, and stops before torch is imported or any folder is made."""
    heavy, code, _, err = run_probe(["run", suite, "-o", str(tmp_path / "run")], offline_env)
    assert heavy == [] and code == 2, (heavy, code, err[-2000:])
    for text in needed + ["To provide them all"]:
        assert text in err, text
    assert not (tmp_path / "run").exists() and not (tmp_path / "empty").exists()


@pytest.mark.parametrize("name", ["pose", "audio", "text"])
def test_each_snippet_key_is_an_option_of_its_task(tmp_path, monkeypatch, name):
    """The lines at the end of the message, pasted into the suite, validate, and every task option they add is one
    the task takes (a key that no option reads would fail the run)."""
    from condbench.preflight import check_task_options

    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lines, exports = snippet_of(missing_files_message(load_suite(name)))
    assert exports == {}
    suite_text = re.sub(r"(?m)^task_options:\n(  .*\n)+", "", suite_path(name).read_text())
    pasted = tmp_path / f"{name}-files.yaml"
    pasted.write_text(suite_text + "\n" + lines + "\n")
    assert main(["validate", str(pasted)]) == 0
    suite = load_suite(str(pasted))
    check_task_options(suite, name)  # raises naming any key the task does not take
    assert set(suite.task_options) > set(load_suite(name).task_options)  # the files' keys were added


def test_every_built_in_entry_gives_the_c_its_network_has():
    """The torch-free catalogue's c sizes are those of the networks the factories build (on the meta device)."""
    checked = 0
    for entry in MODELS.values():
        if entry.origin == "built-in" and entry.planner is not None:
            assert entry.planner().embed_dim == entry.c_dim, entry.name
            checked += 1
    assert checked >= 15


def test_the_torch_free_lookups_agree_with_torch_and_torchvision(monkeypatch, tmp_path):
    import torch
    from torchvision.models import get_model_weights

    from condbench.metrics.weight_files import TORCHVISION_WEIGHT_URLS, torch_hub_dir

    for classifier, url in TORCHVISION_WEIGHT_URLS.items():
        arch, weights = classifier.split(":")
        assert get_model_weights(arch)[weights].url == url
    for env in ({"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "xdg")}, {}):
        for name in ("TORCH_HOME", "XDG_CACHE_HOME"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        assert torch_hub_dir() == Path(torch.hub.get_dir())


def missing_files_message(suite) -> str:
    with pytest.raises(MissingInputsError) as error:
        check_inputs(suite, log=lambda _: None)
    return str(error.value)


def snippet_of(message: str) -> tuple[str, dict[str, str]]:
    """The YAML lines and the ``export NAME=VALUE`` lines at the end of a missing-files message."""
    tail = message.split("To provide them all", 1)[1].split("\n", 1)[1]
    yaml_part, _, env_part = tail.partition("and set in the environment:")
    exports = dict(re.findall(r"^export (\w+)=(\S+)", env_part, flags=re.M))
    return yaml_part.strip("\n"), exports


def test_the_snippet_pasted_into_the_suite_validates_and_provides_every_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-home"))
    message = missing_files_message(load_suite("imagenet"))
    lines, exports = snippet_of(message)
    assert set(exports) == {"TORCH_HOME", "CONDBENCH_CACHE"}
    # paste: the suite file without its own task_options block, then the snippet
    suite_text = re.sub(r"(?m)^task_options:\n(  .*\n)+", "", suite_path("imagenet").read_text())
    pasted = tmp_path / "imagenet-files.yaml"
    pasted.write_text(suite_text + "\n" + lines.replace("/path/to/", f"{tmp_path}/data/") + "\n")
    assert main(["validate", str(pasted)]) == 0
    suite = load_suite(str(pasted))
    assert suite.task_options["samples_per_class"] == 5 and set(suite.model_options) == set(suite.models)
    # put every file where the snippet says, and the preflight finds them all
    for value in re.findall(rf"{re.escape(str(tmp_path))}/data/\S+", pasted.read_text()):
        target = Path(value.rstrip(",}"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.mkdir() if target.name == "clip-vit-base-patch16" else target.write_bytes(b"x")
    for name, value in exports.items():
        folder = tmp_path / "env" / name
        monkeypatch.setenv(name, str(folder))
        for needed in re.findall(rf"^export {name}=\S+  # holding (.*)$", message, flags=re.M)[0].split(", "):
            (folder / needed).parent.mkdir(parents=True, exist_ok=True)
            (folder / needed).write_bytes(b"x")
    assert check_inputs(suite, log=lambda _: None).models == suite.models


def test_the_snippet_keeps_the_suites_own_options_and_lists_only_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    present = tmp_path / "DiT-XL-2-256x256.pt"
    present.write_bytes(b"x")
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text("name: s\ntask: imagenet\nmodels: [dit-xl-2, mdt-xl-2]\npolicies: [baseline]\n"
                          f"task_options: {{classes: 3, clip_model: null, classifier: null}}\n"
                          f"model_options: {{dit-xl-2: {{ckpt: '{present}', sampler: ddpm}}}}\n")
    lines, exports = snippet_of(missing_files_message(load_suite(str(suite_file))))
    provided = yaml.safe_load(lines)
    assert provided["task_options"] == {"classes": 3, "clip_model": None, "classifier": None,
                                        "reference_batch": "/path/to/VIRTUAL_imagenet256_labeled.npz",
                                        "inception_weights": "/path/to/weights-inception-2015-12-05-6726825d.pth"}
    assert provided["model_options"] == {"dit-xl-2": {"ckpt": str(present), "sampler": "ddpm"},
                                         "mdt-xl-2": {"ckpt": "/path/to/mdt_xl2_v2_ckpt.pt"}}
    assert exports == {}


def test_a_shipped_checkpoint_is_given_as_the_model_option_ckpt(tmp_path, monkeypatch):
    """Not `--ckpt`, which `condbench run` does not have."""
    missing = tmp_path / "nope.safetensors"
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text("name: s\ntask: digits\nmodels: [dit-digits]\npolicies: [baseline]\n"
                          f"model_options: {{dit-digits: {{ckpt: '{missing}'}}}}\n")
    message = missing_files_message(load_suite(str(suite_file)))
    assert "model_options: {dit-digits: {ckpt: PATH}}" in message and "pass --ckpt" not in message
    assert "dit-digits: {ckpt: /path/to/digits_dit.safetensors}" in snippet_of(message)[0]  # what training writes


def test_a_file_without_a_suite_key_is_left_to_its_own_lines(tmp_path, monkeypatch):
    """A task (a plugin's, say) whose missing file has no suite key or variable: the lines at the end provide the
    others, and the message says so instead of promising them all."""
    from condbench.checkpoints import CheckpointNotFoundError
    from condbench.registry import TASKS, TaskEntry
    from condbench.suites import Suite

    def inputs(**options):
        def check():
            raise CheckpointNotFoundError("plugin data not found: 'data.bin'.\nHow to provide it: ask its authors.")
        return [check]

    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    monkeypatch.setitem(TASKS, "files-task", TaskEntry("files-task", "a task with a file", dict, inputs=inputs))
    message = missing_files_message(Suite(name="s", task="files-task", models=["dit-xl-2"], policies=["baseline"]))
    assert "2 file(s) missing" in message and "data.bin" in message and "To provide them all" not in message
    assert "the lines at the end provide those that a suite key or a variable provides" in message
    tail = message.split("To provide those files (the others say how above)", 1)[1]
    provided = yaml.safe_load(tail.split("\n", 2)[2])
    assert provided == {"model_options": {"dit-xl-2": {"ckpt": "/path/to/DiT-XL-2-256x256.pt"}}}


def test_an_x_mdpt_decoder_folder_given_to_a_model_is_checked_before_the_run(tmp_path, monkeypatch):
    """Without a decoder option a pose model decodes with the task's VAE folder (checked with the task's files); a
    folder given as the model option is checked too, before any sampling, instead of failing at the first decode."""
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    ckpt = tmp_path / "ema_0.9999_300000.pt"
    ckpt.write_bytes(b"x")
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(f"name: s\ntask: pose\nmodels: [xmdpt-s-2, xmdpt-b-2]\npolicies: [baseline]\n"
                          f"model_options: {{xmdpt-s-2: {{ckpt: '{ckpt}'}}, "
                          f"xmdpt-b-2: {{ckpt: '{ckpt}', decoder: '{tmp_path / 'no-vae'}'}}}}\n")
    message = missing_files_message(load_suite(str(suite_file)))
    assert f"no diffusers folder (config.json + weights) at {tmp_path / 'no-vae'}" in message
    assert "give the folder as the model option decoder of xmdpt-b-2" in message
    assert "[model xmdpt-s-2]" not in message  # its checkpoint is there and it decodes with the task's VAE
    assert "xmdpt-b-2: {ckpt: " in snippet_of(message)[0] and "decoder: /path/to/diffuser_finetune_vae" in message
