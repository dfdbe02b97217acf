"""Golden fixtures for MDSGen: the official triton99/MDSGen code run on a tiny random model.

Usage: PYTHONPATH=src python tools/golden/make_mdsgen.py --official /path/to/MDSGen [--out tests/fixtures/mdsgen]

The official grid is fixed at 102x8 tokens (latent 8x204x16, patch 2) and 32 video frames, so the tiny model
keeps those and shrinks width and depth (hidden 32, 2 heads, depth 3 with decode_layer 1, one side block).
Every parameter is redrawn with ``seeded_state`` (the official init zeroes adaLN and the output layer), from
the layout stored in the fixture, so the weights are not stored: the test redraws them. The
``relative_position_index`` buffers are the official ones (only their checksum is stored, they are 5 MB each).

Writes ``golden.safetensors``: c of the conditional and null branches (captured at the first block's adaLN
input) at float timesteps, the network output for a conditional and a null row, the guided output of
``forward_with_cfg`` (cfg 5, pow 0.01) at the first sampling time, the official power-cosine scales at the 10
sampling times, and the final latents of the official ``DPM_Solver(..., 'dpmsolver++').sample(steps=10 or 6,
order=2, skip_type='time_uniform', method='multistep')`` loop as ``inference.py`` calls it, started from
condbench's PairedNoise; and ``b2_keys.json``, the official ``MDSGen_B_2(decode_layer=4)`` layout (meta device).
Inputs (latents, CAVP-like features) are redrawn by the test from the seeds stored here.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seeded_weights import seeded_state, weights_sum  # noqa: E402

from condbench.checkpoints import save_safetensors  # noqa: E402
from condbench.seeding import PairedNoise  # noqa: E402
from official import official_checkout  # tools/golden/, beside this script

TINY = dict(hidden_size=32, depth=3, num_heads=2, mlp_ratio=4.0, decode_layer=1)
LATENT, FRAMES, FEATURE_DIM = (8, 204, 16), 32, 512
CFG_SCALE, SCALE_POW = 5.0, 0.01
WEIGHT_SEED, INPUT_SEED, NOISE_SEED = 11, 12, 0
RUNS = {10: 2, 6: 1}  # sampler steps -> samples (6 < 10 exercises lower_order_final)


def index_checksum(index: torch.Tensor) -> str:
    return hashlib.sha256(index.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()


def inputs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Latents (n, 8, 204, 16) and unit-norm features (n, 32, 512), drawn as the test redraws them."""
    gen = torch.Generator().manual_seed(INPUT_SEED)
    x = torch.randn(n, *LATENT, generator=gen)
    feats = torch.randn(n, FRAMES, FEATURE_DIM, generator=gen)
    return x, feats / feats.norm(dim=-1, keepdim=True)


def captured_c(model, x, t, feats, prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The c the official network feeds its first block's adaLN, and its output; prob 0 = conditional, 1 = null."""
    seen = {}
    handle = model.blocks[0].adaLN_modulation.register_forward_pre_hook(lambda m, args: seen.update(c=args[0]))
    out = model(x, t, False, feats, prob)
    handle.remove()
    return seen["c"], out


def official_sample(model, solver_module, betas: torch.Tensor, feats: torch.Tensor, steps: int) -> torch.Tensor:
    """``inference.py``'s sampler call on the tiny model, from condbench's paired noise."""
    ns = solver_module.NoiseScheduleVP(schedule="discrete", betas=betas)

    def model_forward(x, t, cfg_scale=None, diffusion_steps=1000, scale_pow=4.0, mix_video_feat=None):
        out = model.forward_with_cfg(x, t, cfg_scale, diffusion_steps, scale_pow, mix_video_feat)
        return torch.split(out, LATENT[0], dim=1)[0]

    model_fn = solver_module.model_wrapper(model_forward, ns, model_type="noise",
                                           model_kwargs=dict(cfg_scale=CFG_SCALE, scale_pow=SCALE_POW,
                                                             mix_video_feat=feats))
    solver = solver_module.DPM_Solver(model_fn, ns, algorithm_type="dpmsolver++")
    z = PairedNoise(NOISE_SEED, range(len(feats))).draw(LATENT)
    return solver.sample(z, steps=steps, order=2, skip_type="time_uniform", method="multistep")


def main() -> None:
    args, commit = official_checkout(__doc__, "github.com/triton99/MDSGen", "tests/fixtures/mdsgen")
    sys.path.insert(0, str(args.official))
    from masked_diffusion import dpm_solver_pytorch
    from masked_diffusion.gaussian_diffusion import get_named_beta_schedule
    from masked_diffusion.models import MDSGen, MDSGen_B_2

    torch.set_grad_enabled(False)
    model = MDSGen(input_size=LATENT[1:], patch_size=(2, 2), in_channels=LATENT[0], **TINY).eval()
    official_state = model.state_dict()
    layout = {k: list(v.shape) for k, v in official_state.items() if not k.endswith("relative_position_index")}
    state = seeded_state(layout, WEIGHT_SEED)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("relative_position_index") for k in missing), (missing, unexpected)
    indices = {index_checksum(v) for k, v in official_state.items() if k.endswith("relative_position_index")}
    assert len(indices) == 1

    x, feats = inputs(3)
    t = torch.tensor([999.0, 500.5, 19.98])
    golden = {}
    golden["c_cond"], _ = captured_c(model, x, t, feats, prob=0.0)
    golden["c_null"], _ = captured_c(model, x, t, feats, prob=1.0)
    _, out_cond = captured_c(model, x[:1], t[:1], feats[:1], prob=0.0)
    _, out_null = captured_c(model, x[1:2], t[2:], feats[1:2], prob=1.0)
    golden["out"] = torch.cat([out_cond, out_null])  # row 0: conditional at t[0]; row 1: null at t[2]
    guided = model.forward_with_cfg(x[:1], torch.tensor([999.0]), CFG_SCALE, 1000, SCALE_POW, feats[:1])
    golden["guided_out"] = guided[:, :LATENT[0]]

    betas = torch.from_numpy(get_named_beta_schedule("linear", 1000))
    ns = dpm_solver_pytorch.NoiseScheduleVP(schedule="discrete", betas=betas)
    times = dpm_solver_pytorch.DPM_Solver(None, ns).get_time_steps("time_uniform", ns.T, 1.0 / ns.total_N, 10, "cpu")
    t_model = (times[:-1] - 1.0 / ns.total_N) * 1000.0  # model_wrapper's get_model_input_time
    golden["sampler_t"] = t_model
    # forward_with_cfg's scale, written as the official expression
    golden["scales"] = (CFG_SCALE - 1) * ((1 - torch.cos(((1 - t_model / 1000) ** SCALE_POW) * math.pi)) * 1 / 2) + 1
    _, sample_feats = inputs(max(RUNS.values()))
    for steps, n in RUNS.items():
        golden[f"samples_{steps}"] = official_sample(model, dpm_solver_pytorch, betas, sample_feats[:n], steps)

    meta = {"repo": "github.com/triton99/MDSGen", "commit": commit, "config": TINY, "latent": list(LATENT),
            "cfg_scale": CFG_SCALE, "scale_pow": SCALE_POW, "t": t.tolist(), "runs": {str(k): v for k, v in RUNS.items()},
            "weight_seed": WEIGHT_SEED, "input_seed": INPUT_SEED, "noise_seed": NOISE_SEED,
            "weights_sum": weights_sum(state), "relative_position_index_sha256": indices.pop(),
            "command": "PYTHONPATH=src python tools/golden/make_mdsgen.py --official <MDSGen checkout>"}
    save_safetensors(golden, args.out / "golden.safetensors", meta)
    (args.out / "layout.json").write_text(json.dumps(layout, separators=(",", ":")) + "\n")
    with torch.device("meta"):
        b2 = MDSGen_B_2(decode_layer=4)
    keys = {k: list(v.shape) for k, v in b2.state_dict().items()}
    (args.out / "b2_keys.json").write_text(json.dumps({"commit": commit, "keys": keys}, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
