"""The example plugin (examples/condbench-flux): installed as its own package, listed, honouring the contract, and
sampling as diffusers' FluxPipeline does."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from condbench import registry
from condbench.cli import main
from condbench.seeding import PairedNoise

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "condbench-flux"


@pytest.fixture(scope="module")
def flux_site(tmp_path_factory):
    """The example installed by pip into a folder of its own (CI installs it into the environment the same way)."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--target", str(site), str(EXAMPLE)], check=True)
    return site


@pytest.fixture
def flux_plugin(flux_site, monkeypatch, isolated_cache):
    monkeypatch.syspath_prepend(str(flux_site))
    saved = dict(registry.MODELS)
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "PLUGIN_ERRORS", [])
    yield
    registry.MODELS.clear()
    registry.MODELS.update(saved)


def test_the_example_is_an_adapter_under_200_lines_and_a_torch_free_entry():
    assert sorted(p.name for p in EXAMPLE.glob("*.py")) == ["condbench_flux.py", "condbench_flux_entry.py"]
    assert len((EXAMPLE / "condbench_flux.py").read_text().splitlines()) < 200


def test_listing_the_installed_example_imports_no_torch(flux_site):
    """The entry point names the light module; the adapter's (torch, diffusers) is imported when it is built."""
    probe = ("import sys; from condbench.cli import main; main(['list', 'models']); "
             "print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'diffusers', 'condbench_flux'}))")
    path = os.pathsep.join(filter(None, [str(flux_site), os.environ.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": path})
    assert "flux-schnell" in done.stdout and "HEAVY []" in done.stdout, done.stdout[-1500:] + done.stderr[-1500:]


def test_the_installed_example_is_listed_and_passes_check_adapter(flux_plugin, capsys):
    assert main(["list", "models"]) == 0
    out, err = capsys.readouterr()
    row = next(line for line in out.splitlines() if line.startswith("flux-schnell "))
    assert "condbench-flux" in row and "text" in row and "3072" in row
    assert "warning" not in err
    assert main(["check-adapter", "flux-schnell"]) == 0
    out = capsys.readouterr().out
    assert "flux-schnell: honours the adapter contract (10 of 10 rules checked)" in out


def test_the_example_samples_as_fluxpipeline_does(flux_plugin, tmp_path):
    """The same tiny folder, prompt embeddings and initial latents through diffusers' own FluxPipeline."""
    from diffusers import FluxPipeline

    case = registry.model_entry("flux-schnell").contract_case(None)
    adapter = case.adapter
    prompts = case.conditions
    out = adapter.sample(prompts, PairedNoise(0, range(3)))
    embeds, pooled = adapter.encoder.encode(prompts)
    pipe = FluxPipeline(scheduler=adapter.scheduler, vae=adapter.vae, text_encoder=None, tokenizer=None,
                        text_encoder_2=None, tokenizer_2=None, transformer=adapter.transformer)
    latents = adapter.pack(PairedNoise(0, range(3)).draw(adapter.latent_shape))
    theirs = pipe(prompt_embeds=embeds, pooled_prompt_embeds=pooled, latents=latents, height=16, width=16,
                  num_inference_steps=3, guidance_scale=0.0, output_type="latent").images  # packed (N, T, 4C)
    assert torch.allclose(adapter.pack(out.samples), theirs, atol=1e-5), (adapter.pack(out.samples) - theirs).abs().max()
