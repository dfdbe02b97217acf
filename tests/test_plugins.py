"""Plugins: entries from other packages' entry points, installed for real (pip --target into a tmp folder)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from condbench import registry
from condbench.cli import main

PLUGIN_MODULE = '''
"""A plugin package: a model, a task and a metric, and entry points that are broken on purpose."""
from condbench.registry import MetricEntry, ModelEntry, TaskEntry


def tiny_adapter(ckpt=None, **options):
    import torch
    from condbench.adapters.dit import DiTAdapter
    from condbench.adapters.dit_model import DiT, DiTConfig

    torch.manual_seed(0)
    return DiTAdapter(DiT(DiTConfig(input_size=8, in_channels=1, hidden_size=32, depth=1, num_heads=4,
                                    num_classes=10)), "plugged-dit", num_steps=2)


def model():
    return ModelEntry("plugged-dit", "digits", 32, "DDPM 2 steps", "random weights", tiny_adapter)


TASK = TaskEntry("plugged-task", "a task from a plugin", dict)
METRIC = MetricEntry("plugged-metric", "a metric from a plugin", dict)
CLASH = ModelEntry("dit-digits", "digits", 1, "-", "-", tiny_adapter)
NOT_AN_ENTRY = 42
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"
[project]
name = "condbench-tinyplug"
version = "0.1"
[tool.setuptools]
py-modules = ["condbench_tinyplug"]
[project.entry-points."condbench.adapters"]
plugged-dit = "condbench_tinyplug:model"
clash = "condbench_tinyplug:CLASH"
wrong-kind = "condbench_tinyplug:NOT_AN_ENTRY"
broken = "condbench_tinyplug_missing:model"
[project.entry-points."condbench.tasks"]
plugged-task = "condbench_tinyplug:TASK"
[project.entry-points."condbench.metrics"]
plugged-metric = "condbench_tinyplug:METRIC"
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """The plugin installed by pip into a folder of its own, as a site-packages directory holds it."""
    source = tmp_path_factory.mktemp("tinyplug")
    (source / "condbench_tinyplug.py").write_text(PLUGIN_MODULE)
    (source / "pyproject.toml").write_text(PYPROJECT)
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(site), str(source)], check=True)
    assert list(site.glob("condbench_tinyplug-0.1.dist-info"))
    return site


@pytest.fixture
def plugged(plugin_site, monkeypatch):
    """The registry as a process with the plugin installed sees it; restored afterwards."""
    monkeypatch.syspath_prepend(str(plugin_site))
    saved = [dict(t) for t in (registry.MODELS, registry.TASKS, registry.METRICS)]
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "PLUGIN_ERRORS", [])
    yield
    for table, before in zip((registry.MODELS, registry.TASKS, registry.METRICS), saved):
        table.clear()
        table.update(before)
    sys.modules.pop("condbench_tinyplug", None)


def test_plugin_entries_register_with_their_origin_and_broken_ones_are_named(plugged):
    builtins = set(registry.MODELS)
    with pytest.warns(registry.PluginWarning) as caught:
        entry = registry.model_entry("plugged-dit")
    assert entry.origin == "condbench-tinyplug" and registry.MODELS["dit-digits"].origin == "built-in"
    assert registry.task_entry("plugged-task").origin == "condbench-tinyplug"
    assert registry.metric_entry("plugged-metric").origin == "condbench-tinyplug"
    assert builtins < set(registry.MODELS)  # every built-in is still there
    assert registry.MODELS["dit-digits"].c_dim == 96  # the clashing entry replaced nothing
    messages = "\n".join(str(w.message) for w in caught)
    assert "'broken'" in messages and "condbench_tinyplug_missing" in messages
    assert "'clash'" in messages and "already registered by built-in" in messages
    assert "'wrong-kind'" in messages and "not a ModelEntry" in messages
    assert len(registry.PLUGIN_ERRORS) == 3
    adapter = registry.load_adapter("plugged-dit")
    assert adapter.embed_dim == 32


def test_plugins_are_loaded_only_on_the_first_lookup(plugged):
    assert "plugged-dit" not in registry.MODELS
    with pytest.warns(registry.PluginWarning):
        registry.models()
    assert "plugged-dit" in registry.MODELS


def test_a_built_in_name_is_looked_up_without_importing_the_plugins(plugged):
    """A plugin cannot replace a built-in, so running built-in models never imports a plugin (which may import
    torch); a name that is not built in loads them."""
    assert registry.model_entry("dit-digits").origin == "built-in" and registry.task_entry("imagenet")
    assert "condbench_tinyplug" not in sys.modules and "plugged-dit" not in registry.MODELS
    with pytest.warns(registry.PluginWarning):
        assert registry.model_entry("plugged-dit").origin == "condbench-tinyplug"


def test_condbench_list_shows_origins_and_warns_about_broken_plugins(plugged, capsys):
    assert main(["list", "models"]) == 0
    out, err = capsys.readouterr()
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "condbench-tinyplug" in rows["plugged-dit"] and "built-in" in rows["dit-digits"]
    assert "from" in out.splitlines()[0]
    assert "warning: plugin 'broken' (condbench.adapters, package condbench-tinyplug) skipped" in err
    assert main(["list", "metrics"]) == 0
    assert "plugged-metric" in capsys.readouterr().out
