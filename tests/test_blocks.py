"""Block diversity: linear CKA and mean token cosine between block outputs, on the policy's own trajectory."""
from __future__ import annotations

import json

import pytest
import torch

from condbench.blocks import BLOCKS_FILE, block_diversity, block_outputs, linear_cka, mean_token_cosine
from condbench.cli import main
from condbench.policies import parse_policy


def hsic_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """CKA from centred Gram matrices (HSIC form), computed independently of the feature-space form."""
    m = len(x)
    h = torch.eye(m, dtype=torch.float64) - 1.0 / m
    k, l = h @ (x.double() @ x.double().T) @ h, h @ (y.double() @ y.double().T) @ h
    return float((k * l).sum() / ((k * k).sum().sqrt() * (l * l).sum().sqrt()))


def test_linear_cka_equals_its_gram_form_and_ignores_rotation_and_scale():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=g), torch.randn(40, 9, generator=g)
    assert linear_cka(x, y) == pytest.approx(hsic_cka(x, y), abs=1e-10)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=g))
    assert linear_cka(x, 3 * x @ rotation + 2) == pytest.approx(1.0, abs=1e-10)
    a, b = torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    manual = sum(float(a[n, t] @ b[n, t] / (a[n, t].norm() * b[n, t].norm())) for n in range(2) for t in range(5)) / 10
    assert mean_token_cosine(a, b) == pytest.approx(manual, abs=1e-6)


def test_block_outputs_are_what_the_network_computes_at_that_step(tiny_adapter):
    """The last block's output, through the final layer, is the network output at that step's state."""
    labels = torch.tensor([1, 5, 8])
    policy = parse_policy("tail:0.05")
    outputs = block_outputs(tiny_adapter, labels, policy, [0, 7])
    assert set(outputs) == {0, 7} and all(len(o) == 2 for o in outputs.values())  # TINY has depth 2
    assert outputs[7][0].shape == (3, 16, 32)
    from condbench.seeding import PairedNoise

    state = tiny_adapter.sample(labels, PairedNoise(0, range(3)), policy, keep_states=(7,)).states[7]
    t = tiny_adapter.sampler_timesteps()[7].expand(3)
    model = tiny_adapter.model
    c = model.conditional_vector(t, labels, lambda c, tp, cp: policy.apply(c, tp, cp, step=7, num_steps=12).c)
    expected = model.unpatchify(model.final_layer(outputs[7][-1], c))
    with torch.no_grad():
        hooked = tiny_adapter.denoise(state.x, t, labels, hook=lambda c, tp, cp: policy.apply(c, tp, cp, step=7,
                                                                                            num_steps=12).c)
    assert torch.allclose(expected, hooked, atol=1e-5)


def test_block_diversity_gives_symmetric_matrices_with_a_unit_diagonal(tiny_adapter):
    result = block_diversity(tiny_adapter, torch.tensor([0, 4]), [parse_policy("baseline"), parse_policy("drop-t")],
                             [0, 11])
    assert list(result["policies"]) == ["baseline", "drop-t"] and result["steps"] == [0, 11]
    cka = torch.tensor(result["policies"]["drop-t"]["11"]["cka"])
    assert torch.allclose(cka, cka.T, atol=1e-9) and torch.allclose(cka.diagonal(), torch.ones(2), atol=1e-9)
    assert result["policies"]["baseline"]["0"] != result["policies"]["drop-t"]["0"]


def test_analyze_blocks_writes_json_and_the_report_shows_heatmaps(tmp_path, capsys):
    from condbench.reports.html import build_report
    from condbench.runner import RunOptions, run_suite
    from condbench.suites import Suite

    run = tmp_path / "run"
    run_suite(Suite(name="s", task="digits", models=["dit-digits"], policies=["baseline"], seed=0, batch_size=10,
                    shard_size=10, task_options={"samples_per_class": 1}, model_options={"dit-digits": {"num_steps": 2}},
                    analysis={"sweep_points": 2}, bootstrap=5), run, RunOptions(log=lambda _: None))
    assert main(["analyze", "--blocks", "--samples", "2", "--block-steps", "0,49", "--policies", "baseline;const-t:500",
                 "-o", str(run)]) == 0
    assert "const-t:500" in capsys.readouterr().out
    result = json.loads((run / BLOCKS_FILE).read_text())
    assert len(result["policies"]["const-t:500"]["49"]["cka"]) == 4  # the digits DiT's 4 blocks
    page = build_report([run], tmp_path / "report.html").read_text()
    assert "Block diversity" in page and "block CKA heatmaps" in page and "const-t:500" in page
    assert main(["analyze", "--blocks", "--block-steps", "50", "-o", str(tmp_path / "x")]) == 2
