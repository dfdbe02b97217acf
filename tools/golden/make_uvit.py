"""Golden fixture for U-ViT: the official network and sampler (baofff/U-ViT) on tiny random networks.

Usage: python tools/golden/make_uvit.py --official PATH/TO/U-ViT [--commit SHA] [--out tests/fixtures/uvit]

Imports the official ``libs.uvit.UViT``, ``dpm_solver_pp.{NoiseScheduleVP, DPM_Solver}`` and
``stable_diffusion_beta_schedule`` (read out of ``eval_ldm_discrete.py``, whose other imports need a
training setup), re-draws every weight, and saves the weights in the official key layout, the time and
label tokens and the raw network output for a few (t, y), and the final latents of the official sampler
call of ``eval_ldm_discrete.py`` (``DPM_Solver(..., predict_x0=True).sample(z, steps, eps=1/N, T=1)``,
with ``cond + 0.4 * (cond - uncond)`` guidance and the network fed ``t_continuous * N``) for 8 and 7
evaluations (solver orders [3, 3, 2] and [3, 3, 1]), started from condbench's per-sample noise.
A second, smaller network with the options the huge model leaves off (``mlp_time_embed``, ``conv``,
``qkv_bias``) checks the network alone.
"""
from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

TINY = dict(img_size=8, patch_size=2, in_chans=4, embed_dim=32, depth=4, num_heads=4, mlp_ratio=2,
            qkv_bias=False, mlp_time_embed=False, num_classes=11, conv=False)
TINY_OPTIONS = dict(img_size=4, patch_size=2, in_chans=4, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2,
                    qkv_bias=True, mlp_time_embed=True, num_classes=11, conv=True)
SEED, STEPS, SCALE = 11, (8, 7), 0.4  # SCALE as the official config writes it (condbench: cfg_scale 1.4)
LABELS = [3, 0, 9]
NULL = 10


def official_function(path: Path, name: str):
    """One top-level function of an official file, executed on its own (the file's imports are not needed)."""
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    namespace = {"torch": torch}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(path), "exec"), namespace)
    return namespace[name]


def randomized(model: torch.nn.Module, std: float) -> torch.nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--official", required=True, type=Path)
    parser.add_argument("--commit", help="the official commit (default: git rev-parse HEAD in --official)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "uvit")
    args = parser.parse_args()
    sys.path.insert(0, str(args.official))
    from dpm_solver_pp import DPM_Solver, NoiseScheduleVP  # the official code
    from libs.uvit import UViT, timestep_embedding

    from condbench.seeding import PairedNoise

    betas = official_function(args.official / "eval_ldm_discrete.py", "stable_diffusion_beta_schedule")()
    torch.manual_seed(0)
    model = randomized(UViT(**TINY), 0.15)
    options = randomized(UViT(**TINY_OPTIONS), 0.2)
    y = torch.tensor(LABELS + [NULL, 5])
    t = torch.tensor([999.0, 500.5, 17.25, 1.0, 0.0])
    x = torch.randn(len(y), 4, 8, 8)
    x_small = torch.randn(len(y), 4, 4, 4)
    tensors = {"x": x, "t": t, "y": y, "x_options": x_small}
    with torch.no_grad():
        tensors["time_token"] = model.time_embed(timestep_embedding(t, TINY["embed_dim"]))
        tensors["label_token"] = model.label_emb(y)
        tensors["out"] = model(x, t, y=y)
        tensors["out_options"] = options(x_small, t, y=y)
        tensors["time_token_options"] = options.time_embed(timestep_embedding(t, TINY_OPTIONS["embed_dim"]))

        n, total = len(LABELS), len(betas)
        labels = torch.tensor(LABELS)
        z = PairedNoise(SEED, range(n)).draw((4, 8, 8))
        for steps in STEPS:
            seen = []

            def cfg_nnet(x_in, timesteps):  # eval_ldm_discrete.py's cfg_nnet with y bound
                seen.append(timesteps[0].clone())
                cond = model(x_in, timesteps, y=labels)
                uncond = model(x_in, timesteps, y=torch.full_like(labels, NULL))
                return cond + SCALE * (cond - uncond)

            schedule = NoiseScheduleVP(schedule="discrete", betas=torch.tensor(betas).float())
            solver = DPM_Solver(lambda x_in, t_continuous: cfg_nnet(x_in, t_continuous * total), schedule,
                                predict_x0=True, thresholding=False)
            tensors[f"final_{steps}"] = solver.sample(z.clone(), steps=steps, eps=1.0 / total, T=1.0)
            tensors[f"times_{steps}"] = torch.stack(seen)  # the network's time input at every evaluation

    commit = args.commit or subprocess.run(["git", "rev-parse", "HEAD"], cwd=args.official, capture_output=True,
                                           text=True).stdout.strip()
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"official": "baofff/U-ViT", "commit": commit, "config": TINY, "config_options": TINY_OPTIONS,
            "seed": SEED, "steps": list(STEPS), "official_scale": SCALE, "labels": LABELS, "null": NULL}
    metadata = {"meta": json.dumps(meta)}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out / "weights.safetensors"),
              metadata=metadata)
    save_file({k: v.contiguous() for k, v in options.state_dict().items()},
              str(args.out / "weights_options.safetensors"), metadata=metadata)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(args.out / "outputs.safetensors"),
              metadata=metadata)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
