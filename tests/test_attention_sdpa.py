"""Every adapter's network computes attention with ``torch.nn.functional.scaled_dot_product_attention`` (the
relative-position bias of MDT, X-MDPT and MDSGen as an additive float mask); the whole network's output equals
the same network with attention written out, softmax(q k^T / sqrt(d) + bias) v, within float32 rounding on the CPU.

The explicit form replaces the library function for the reference run; a counter shows it really ran in every
attention layer. SD3's transformer is diffusers' (its joint attention processor calls the same function).
"""
import pytest
import torch
import torch.nn.functional as F

from condbench.adapters.dit_model import DiT, DiTConfig
from condbench.adapters.lightningdit_model import LightningDiT, LightningDiTConfig
from condbench.adapters.mdsgen_model import MDSGen, MDSGenConfig
from condbench.adapters.mdt_model import MDT, MDTConfig
from condbench.adapters.uvit_model import UViT, UViTConfig
from condbench.adapters.xmdpt_model import XMDPT, XMDPTConfig

# float32 with another summation order: measured 1.5e-7 to 4.7e-7 of the output's scale on these networks
TOLERANCE = 1e-5


def explicit_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **unused):
    """softmax(q k^T * scale + mask) v, written out: q, k, v (N, H, T, d), mask (H, T, T) or broadcastable."""
    assert dropout_p == 0.0 and not is_causal and not unused, "inference attention only"
    logits = q @ k.transpose(-2, -1) * (q.shape[-1] ** -0.5 if scale is None else scale)  # (N, H, T, T)
    if attn_mask is not None:
        logits = logits + attn_mask
    return logits.softmax(dim=-1) @ v


def randomized(network: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter redrawn (zero-initialised adaLN and biases would hide differences)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.normal_(0, 0.2)
    return network.eval()


def dit_like(network):
    x, t, y = torch.randn(3, 4, 8, 8), torch.tensor([3.0, 400.0, 999.0]), torch.tensor([0, 5, 10])
    return network, (x, t, y), network.config.depth


def networks():
    """name -> (network, inputs, attention layers per forward), all tiny and random."""
    small = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, num_heads=4, num_classes=10)
    torch.manual_seed(0)
    xmdpt = XMDPTConfig(input_size=8, hidden_size=32, depth=3, num_heads=4, decode_layer=1, pose_dim=16,
                        source_dim=24, feature_tokens=5)
    mdsgen = MDSGenConfig(latent_size=(8, 4), in_channels=2, hidden_size=32, depth=3, num_heads=4, decode_layer=1,
                          frequency_embedding_size=32, num_frames=4, feature_dim=16)
    uvit = UViTConfig(img_size=8, patch_size=2, in_chans=4, embed_dim=32, depth=3, num_heads=4, num_classes=11)
    return {
        "dit": lambda: dit_like(randomized(DiT(DiTConfig(depth=2, **small)))),
        "lightningdit": lambda: dit_like(randomized(LightningDiT(LightningDiTConfig(depth=2, use_qknorm=True, **small)))),
        "mdt": lambda: (lambda net: (net, dit_like(net)[1], 6))(
            randomized(MDT(MDTConfig(depth=6, decode_layer=2, **small)))),
        "xmdpt": lambda: (randomized(XMDPT(xmdpt)), (torch.randn(2, 4, 8, 8), torch.tensor([10.0, 900.0]),
                                                     torch.randn(2, 32)), 3),
        "mdsgen": lambda: (randomized(MDSGen(mdsgen)), (torch.randn(2, 2, 8, 4), torch.tensor([10.0, 900.0]),
                                                        torch.randn(2, 4, 16), torch.tensor([1.0, 0.0])), 3),
        "uvit": lambda: (randomized(UViT(uvit)), (torch.randn(2, 4, 8, 8), torch.tensor([10.0, 900.0]),
                                                  torch.tensor([3, 10])), 3),
    }


@pytest.mark.parametrize("name", list(networks()))
def test_sdpa_equals_explicit_attention(name, monkeypatch):
    network, inputs, layers = networks()[name]()
    with torch.no_grad():
        fused = network(*inputs)
        calls = []

        def counted(*args, **kwargs):
            calls.append(kwargs.get("attn_mask") is not None)
            return explicit_attention(*args, **kwargs)

        monkeypatch.setattr(F, "scaled_dot_product_attention", counted)
        explicit = network(*inputs)
    assert len(calls) == layers  # the explicit form ran in every attention layer
    assert all(calls) == (name in ("mdt", "xmdpt", "mdsgen"))  # the relative-position bias as a float mask
    scale = float(explicit.abs().max())
    error = float((fused - explicit).abs().max())
    assert 0 <= error <= TOLERANCE * scale, f"{name}: max |sdpa - explicit| = {error:.3g} (scale {scale:.3g})"


def test_sd3_joint_attention_uses_sdpa_too(monkeypatch):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    model = randomized(diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=1, in_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
        caption_projection_dim=16, joint_attention_dim=32, pooled_projection_dim=24, out_channels=4,
        pos_embed_max_size=16), seed=1)
    inputs = dict(hidden_states=torch.randn(2, 4, 8, 8), encoder_hidden_states=torch.randn(2, 6, 32),
                  pooled_projections=torch.randn(2, 24), timestep=torch.tensor([100.0, 800.0]))
    with torch.no_grad():
        fused = model(**inputs).sample
        calls = []
        monkeypatch.setattr(F, "scaled_dot_product_attention",
                            lambda *a, **k: calls.append(1) or explicit_attention(*a, **k))
        explicit = model(**inputs).sample
    assert len(calls) == 2
    assert float((fused - explicit).abs().max()) <= TOLERANCE * float(explicit.abs().max())
