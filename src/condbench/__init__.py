"""condbench: how diffusion transformers use their conditional vector c, and what pruning it does.

Python API::

    import condbench
    adapter = condbench.load_adapter("dit-digits")          # or ("dit-xl-2", ckpt=PATH)
    c = adapter.embed(torch.arange(10), t=999)               # (N, D), before AdaLN's SiLU
    policy = condbench.parse_policy("tail:0.01@last:25")
"""
__version__ = "0.1.0"

from .analysis import embedding_statistics, participation_ratio  # noqa: E402
from .policies import Policy, PolicySpecError, parse_policy  # noqa: E402
from .registry import load_adapter, load_task  # noqa: E402

__all__ = ["__version__", "embedding_statistics", "load_adapter", "load_task", "parse_policy",
           "participation_ratio", "Policy", "PolicySpecError"]
