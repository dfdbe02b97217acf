"""Write the transport golden fixture (SiT, REPA, MG, LightningDiT's sampler) from the official code.

Builds tiny official networks (hidden 16, depth 2, 8x8x4 latents, 10 classes), re-draws every parameter at
random (the official init zeroes adaLN and the output layer), runs the official networks and the official
samplers on condbench's paired noise, and saves into ``tests/fixtures/transport/``:

- ``sit.safetensors``: willisma/SiT ``models.SiT`` (learned sigma: 8 output channels), official keys;
- ``repa.safetensors``: sihyun-yu/REPA ``models/sit.SiT`` with its (training-only) ``projectors.0.*``;
- ``mg.pt``: MG's network as ``{'ema': state, 'model': state}`` ('model' differs in the label table, so a
  loader that picks 'model' over 'ema' fails the test). tzco/diffusion-wo-cfg could not be fetched here;
  its ``models.py`` (read through the code index, fork Peterande/Diffusion-wo-CFG) is SiT's with the null
  label row always present (``use_cfg_embedding = dropout_prob > 0 or True``) and is built with
  ``class_dropout_prob=0.0, learn_sigma=False``; that is what is built here from SiT's ``models.py``. Its
  ``sampler.euler_maruyama_sampler`` is REPA's for a network that returns a tensor, so REPA's runs it.
- ``lightningdit.safetensors``: a tiny hustvl/LightningDiT ``LightningDiT`` with the released options;
- ``expected.safetensors``: network inputs and the official c and outputs, and each sampler's final latents;
  metadata: the commits, the tiny configs, the sampler settings, the noise seed and indices.

Samplers (short grids; the official functions take the step count): SiT SDE (Euler-Maruyama, sigma
diffusion, Mean last step 0.04; 8 steps, CFG 1.5), SiT ODE Euler (8 grid points, CFG 1.5), SiT ODE dopri5
(8 grid points, atol 1e-6, rtol 1e-3, CFG 1.5; one sample per call, since the adaptive step control sees the
whole batch), REPA SDE (8 steps, CFG 1.8 for t <= 0.7), MG (8 steps, no
CFG), LightningDiT (its ``transport`` Euler ODE, 10 grid points, shift 0.3, and ``LightningDiT.forward_with_cfg``
with CFG 6.7 for t >= 0.125 on channels [:3], run on the MG-layout network and on the tiny LightningDiT).
The official SDEs draw their
per-step noise with ``torch.randn``/``torch.randn_like``; REPA's sampler writes the null label as 1000,
which a wrapper maps to the tiny table's null row 10; those are replaced, while the official sampler
runs, by the draws of condbench's ``PairedNoise(seed, indices)`` in the order condbench draws them.

Usage: ``python tools/golden/make_transport.py --sit /work/ref/SiT --repa /work/ref/REPA
--lightningdit /work/ref/LightningDiT [--commits SIT,REPA,LIGHTNINGDIT]``
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # LightningDiT's modules wrap forwards in torch.compile

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
from condbench.seeding import PairedNoise  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "transport"
TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=16, depth=2, num_heads=2, mlp_ratio=4.0,
            num_classes=10)
LIGHTNINGDIT_TINY = dict(input_size=4, patch_size=1, in_channels=8, hidden_size=16, depth=1, num_heads=2, mlp_ratio=4.0,
                         num_classes=10, class_dropout_prob=0.1, learn_sigma=False, use_qknorm=False,
                         use_swiglu=True, use_rope=True, use_rmsnorm=True, wo_shift=False)
SEED, INDICES, LABELS = 0, [0, 1, 2], [1, 7, 3]
NULL = TINY["num_classes"]


def load_module(name: str, path: Path, package_dirs: list[str] | None = None) -> types.ModuleType:
    """Import a file (or a package's ``__init__``) under a private name, so same-named official modules coexist."""
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=package_dirs)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def on_sys_path(root: Path, purge: tuple[str, ...]):
    """Import an official checkout's top-level modules (``models``, ``transport``), then forget them."""
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for name in list(sys.modules):
            if name.split(".")[0] in purge:
                del sys.modules[name]


def randomise(model: torch.nn.Module, seed: int, std: float = 0.1) -> None:
    """Re-draw every parameter except the fixed position table from N(0, std^2)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.copy_(torch.randn(p.shape, generator=gen) * std)


def capture_c(model: torch.nn.Module) -> tuple[dict, list]:
    """Forward hooks that record t_embedder(t) + y_embedder(y), the c every official forward forms."""
    seen: dict = {}
    handles = [model.t_embedder.register_forward_hook(lambda m, i, o: seen.__setitem__("t", o)),
               model.y_embedder.register_forward_hook(lambda m, i, o: seen.__setitem__("y", o))]
    return seen, handles


def network_io(model, x, t, y, first_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The official c and denoiser output on (x, t, y)."""
    seen, handles = capture_c(model)
    with torch.no_grad():
        out = model(x, t, y)
    for h in handles:
        h.remove()
    return seen["t"] + seen["y"], (out[0] if first_output else out)


class NoiseFeed:
    """condbench's paired noise: the initial draw, then per-step draws handed to the official sampler."""

    def __init__(self, steps: int,
                 shape: tuple[int, ...] = (TINY["in_channels"], TINY["input_size"], TINY["input_size"])):
        noise = PairedNoise(SEED, INDICES)
        self.initial = noise.draw(shape)  # (N, C, H, W)
        self.draws = [noise.draw(shape) for _ in range(steps)]
        self.used = 0

    def next(self, rows: int, like: torch.Tensor) -> torch.Tensor:
        draw = self.draws[self.used]
        self.used += 1
        return torch.cat([draw] * (rows // len(draw))).to(like.dtype)  # the CFG batch repeats the rows

    @contextlib.contextmanager
    def patched(self):
        """Route ``torch.randn(size)`` and ``torch.randn_like(x)`` inside the official sampler to the feed."""
        randn, randn_like = torch.randn, torch.randn_like
        torch.randn = lambda size, *a, **k: self.next(size[0], torch.empty(0))
        torch.randn_like = lambda x, *a, **k: self.next(len(x), x)
        try:
            yield
        finally:
            torch.randn, torch.randn_like = randn, randn_like
        assert self.used == len(self.draws), (self.used, len(self.draws))


def cfg_batch(feed: NoiseFeed) -> tuple[torch.Tensor, torch.Tensor]:
    """The official [z; z], [y; null] batch of SiT-style guidance."""
    y = torch.tensor(LABELS)
    return torch.cat([feed.initial, feed.initial]), torch.cat([y, torch.full_like(y, NULL)])


def run_sit(root: Path, expected: dict) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    """SiT's network and its SDE / ODE samplers; returns the state dict (and the MG-layout one)."""
    with on_sys_path(root, ("models", "transport", "download", "train_utils")):
        models = load_module("models", root / "models.py")
        transport = load_module("transport", root / "transport" / "__init__.py", [str(root / "transport")])
        sit = models.SiT(**TINY, class_dropout_prob=0.1, learn_sigma=True).eval()
        randomise(sit, seed=1)
        x = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(5))
        t, y = torch.tensor([0.0, 0.3, 0.75, 1.0]), torch.tensor([0, 5, 9, NULL])
        expected["sit/x"], expected["sit/t"], expected["sit/y"] = x, t, y
        expected["sit/c"], expected["sit/out"] = network_io(sit, x, t, y, first_output=False)

        sampler = transport.Sampler(transport.create_transport("Linear", "velocity", None, None, None))
        runs = {"sit_sde": (sampler.sample_sde(sampling_method="Euler", diffusion_form="sigma", diffusion_norm=1.0,
                                               last_step="Mean", last_step_size=0.04, num_steps=8), 7),
                "sit_ode_euler": (sampler.sample_ode(sampling_method="euler", num_steps=8), 0),
                "sit_ode_dopri5": (sampler.sample_ode(sampling_method="dopri5", num_steps=8, atol=1e-6, rtol=1e-3), 0)}
        for name, (sample_fn, draws) in runs.items():
            feed = NoiseFeed(draws)
            z, y2 = cfg_batch(feed)
            with feed.patched(), torch.no_grad():
                if name == "sit_ode_dopri5":  # adaptive steps depend on the batch: one sample at a time
                    n = len(LABELS)
                    final = torch.cat([sample_fn(z[i::n], sit.forward_with_cfg, y=y2[i::n], cfg_scale=1.5)[-1][:1]
                                       for i in range(n)])
                else:
                    final = sample_fn(z, sit.forward_with_cfg, y=y2, cfg_scale=1.5)[-1]
            expected[f"{name}/final"] = final[: len(LABELS)].clone()

        mg = models.SiT(**TINY, class_dropout_prob=0.0, learn_sigma=False)
        mg.y_embedder.embedding_table = torch.nn.Embedding(NULL + 1, TINY["hidden_size"])  # MG forces the null row
        randomise(mg, seed=3)
        return {k: v.contiguous() for k, v in sit.state_dict().items()}, mg.eval()


def run_repa_and_mg(root: Path, mg, expected: dict) -> dict[str, torch.Tensor]:
    """REPA's network and sampler; MG's network (built by run_sit) with the same sampler and no guidance."""
    with on_sys_path(root, ("models", "samplers")):
        repa_models = load_module("repa_sit", root / "models" / "sit.py")
        samplers = load_module("repa_samplers", root / "samplers.py")
        repa = repa_models.SiT(**TINY, decoder_hidden_size=TINY["hidden_size"], class_dropout_prob=0.1,
                               encoder_depth=1, z_dims=[8], projector_dim=8,
                               qk_norm=False, fused_attn=False, use_cfg=True).eval()
        randomise(repa, seed=2)
        x = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(6))
        t, y = torch.tensor([1.0, 0.7, 0.25, 0.04]), torch.tensor([0, 5, 9, NULL])
        expected["repa/x"], expected["repa/t"], expected["repa/y"] = x, t, y
        expected["repa/c"], expected["repa/out"] = network_io(repa, x, t, y, first_output=True)
        expected["mg/c"], expected["mg/out"] = network_io(mg, x, t, y, first_output=False)

        y_run = torch.tensor(LABELS)

        def null_as_1000(network, wrap):
            """REPA's sampler writes the null class as 1000; the tiny table's null row is NULL."""
            return lambda x, t, y: wrap(network(x, t, torch.where(y == 1000, NULL, y)))

        for name, model, scale in (("repa_sde", null_as_1000(repa, lambda out: out), 1.8),
                                   ("mg_sde", null_as_1000(mg, lambda out: (out,)), 1.0)):
            feed = NoiseFeed(7)
            with feed.patched(), torch.no_grad():
                final = samplers.euler_maruyama_sampler(model, feed.initial, y_run, num_steps=8, cfg_scale=scale,
                                                        guidance_low=0.0, guidance_high=0.7, path_type="linear")
            expected[f"{name}/final"] = final.to(torch.float32)
        return {k: v.contiguous() for k, v in repa.state_dict().items()}


def stub_fairscale() -> None:
    """LightningDiT's ``models/rmsnorm.py`` imports fairscale for layers the sampler never touches."""
    for name in ["fairscale", "fairscale.nn", "fairscale.nn.model_parallel", "fairscale.nn.model_parallel.initialize",
                 "fairscale.nn.model_parallel.layers"]:
        sys.modules.setdefault(name, types.ModuleType(name))
    for attr in ("ColumnParallelLinear", "ParallelEmbedding", "RowParallelLinear"):
        setattr(sys.modules["fairscale.nn.model_parallel.layers"], attr, None)


def run_lightningdit(root: Path, mg, expected: dict) -> dict[str, torch.Tensor]:
    """LightningDiT's transport Euler ODE (shifted grid) with its CFG-interval guidance: on the MG network
    (through ``LightningDiT.forward_with_cfg``) and on a tiny official LightningDiT with the released options
    (RMSNorm, SwiGLU, RoPE, patch 1, no learned sigma; 8 latent channels, guided on [:3]). Returns the
    latter's state dict."""
    stub_fairscale()
    with on_sys_path(root, ("models", "transport")):
        lightning = load_module("models.lightningdit", root / "models" / "lightningdit.py")
        transport = load_module("transport", root / "transport" / "__init__.py", [str(root / "transport")])
        sampler = transport.Sampler(transport.create_transport("Linear", "velocity", None, None, None,
                                                               use_cosine_loss=True, use_lognorm=True))
        sample_fn = sampler.sample_ode(sampling_method="euler", num_steps=10, atol=1e-6, rtol=1e-3, reverse=False,
                                       timestep_shift=0.3)
        net = lightning.LightningDiT(**LIGHTNINGDIT_TINY).eval()
        randomise(net, seed=4)
        with torch.no_grad():
            for name, p in net.named_parameters():
                if "norm" in name:  # RMSNorm gains near 1
                    p.add_(1.0)
        net_shape = (LIGHTNINGDIT_TINY["in_channels"], LIGHTNINGDIT_TINY["input_size"], LIGHTNINGDIT_TINY["input_size"])
        mg_shape = (TINY["in_channels"], TINY["input_size"], TINY["input_size"])
        for name, model, shape in (("lightningdit_ode", mg, mg_shape), ("lightningdit_net_ode", net, net_shape)):
            guided = functools.partial(lightning.LightningDiT.forward_with_cfg, model)  # self.forward: the network's
            feed = NoiseFeed(0, shape)
            z, y2 = cfg_batch(feed)
            with torch.no_grad():
                final = sample_fn(z, guided, y=y2, cfg_scale=6.7, cfg_interval=True, cfg_interval_start=0.125)[-1]
            expected[f"{name}/final"] = final[: len(LABELS)].clone()
        return {k: v.contiguous() for k, v in net.state_dict().items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sit", type=Path, required=True, help="willisma/SiT checkout")
    parser.add_argument("--repa", type=Path, required=True, help="sihyun-yu/REPA checkout")
    parser.add_argument("--lightningdit", type=Path, required=True, help="hustvl/LightningDiT checkout")
    parser.add_argument("--commits", default="", help="SIT,REPA,LIGHTNINGDIT commit ids for the metadata")
    args = parser.parse_args()
    torch.manual_seed(0)
    expected: dict[str, torch.Tensor] = {}
    sit_state, mg = run_sit(args.sit.resolve(), expected)
    repa_state = run_repa_and_mg(args.repa.resolve(), mg, expected)
    lightning_state = run_lightningdit(args.lightningdit.resolve(), mg, expected)

    commits = dict(zip(("sit", "repa", "lightningdit"), args.commits.split(","))) if args.commits else {}
    meta = {"commits": json.dumps(commits), "tiny": json.dumps(TINY), "seed": str(SEED),
            "indices": json.dumps(INDICES), "labels": json.dumps(LABELS),
            "mg_source": "SiT models.py with the null row forced (tzco/diffusion-wo-cfg models.py, via its fork "
                         "Peterande/Diffusion-wo-CFG); sampler: REPA samplers.euler_maruyama_sampler"}
    OUT.mkdir(parents=True, exist_ok=True)
    save_file(sit_state, OUT / "sit.safetensors", metadata=meta)
    save_file(repa_state, OUT / "repa.safetensors", metadata=meta)
    save_file(lightning_state, OUT / "lightningdit.safetensors",
              metadata={**meta, "lightningdit": json.dumps(LIGHTNINGDIT_TINY)})
    mg_state = {k: v.contiguous() for k, v in mg.state_dict().items()}
    model_state = dict(mg_state)  # shares every tensor with 'ema' except the label table
    model_state["y_embedder.embedding_table.weight"] = mg_state["y_embedder.embedding_table.weight"] + 1.0
    torch.save({"ema": mg_state, "model": model_state}, OUT / "mg.pt")
    save_file({k: v.contiguous() for k, v in expected.items()}, OUT / "expected.safetensors", metadata=meta)
    print({k: tuple(v.shape) for k, v in expected.items()})


if __name__ == "__main__":
    main()
