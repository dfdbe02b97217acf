"""condbench: how diffusion transformers use their conditional vector c, and what pruning it does.

Python API::

    import condbench
    adapter = condbench.load_adapter("dit-digits")          # or ("dit-xl-2", ckpt=PATH)
    c = adapter.embed(torch.arange(10), t=999)               # (N, D), before AdaLN's SiLU
    policy = condbench.parse_policy("tail:0.01@last:25")
"""
__version__ = "0.1.0"

# the public names load on first use (PEP 562), so that `import condbench.cli` and `condbench --help` do not
# import torch
_LAZY = {"embedding_statistics": "analysis", "participation_ratio": "analysis", "Policy": "policies",
         "PolicySpecError": "policies", "parse_policy": "policies", "load_adapter": "registry", "load_task": "registry"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["__version__", "embedding_statistics", "load_adapter", "load_task", "parse_policy",
           "participation_ratio", "Policy", "PolicySpecError"]
