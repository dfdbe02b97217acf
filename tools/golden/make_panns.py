"""Golden fixture for PANNs Cnn14 16 kHz (FD_PANNs, KL, IS): the official Cnn14 on random weights.

Usage: python tools/golden/make_panns.py --official PATH/TO/audioset_tagging_cnn [--commit SHA]
       [--out tests/fixtures/audio_metrics]

Builds qiuqiangkong/audioset_tagging_cnn ``pytorch/models.py`` ``Cnn14(sample_rate=16000, window_size=512,
hop_size=160, mel_bins=64, fmin=50, fmax=8000, classes_num=527)`` (as av-benchmark's ``ExtractionModels`` and
the README's Cnn14_16k command build it), front end from torchlibrosa 0.1.0 (PyPI), and loads
:func:`condbench.metrics.panns.random_state_dict` into every network weight, batch-norm running statistics
included (only the frozen torchlibrosa DFT and mel matrices keep their own values). In eval mode it records, for
the test waveforms of ``make_vggish.py``: the log-mel output of ``logmel_extractor``, the ``embedding`` and
``clipwise_output`` it returns, and the ``fc_audioset`` output (the logits av-benchmark's KL and IS use, read
with a forward hook). The fixture also stores the official ``logmel_extractor.melW`` and the key -> shape
layout of the official state dict (what ``Cnn14_16k_mAP=0.438.pth`` holds under ``'model'``).

The weights (80M parameters) are not stored: the seed and their sum are; the test redraws them. Nothing is
stubbed (models.py imports torchlibrosa and its own pytorch_utils.py).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from make_vggish import test_waveforms  # tools/golden/, beside this script
from safetensors.torch import save_file
from seeded_weights import weights_sum

SEED = 13


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--official", required=True, type=Path, help="checkout of qiuqiangkong/audioset_tagging_cnn")
    parser.add_argument("--commit")
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "audio_metrics")
    args = parser.parse_args()

    from condbench.metrics.panns import FRONT_END_PREFIXES, random_state_dict

    sys.path.insert(0, str(args.official / "pytorch"))
    import models  # the official pytorch/models.py

    model = models.Cnn14(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000,
                         classes_num=527).eval()
    state = random_state_dict(SEED)
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys and all(k.startswith(FRONT_END_PREFIXES) for k in result.missing_keys), result

    captured = {}
    model.logmel_extractor.register_forward_hook(lambda module, inputs, output: captured.__setitem__("logmel", output))
    model.fc_audioset.register_forward_hook(lambda module, inputs, output: captured.__setitem__("logits", output))
    waveforms = test_waveforms()
    with torch.no_grad():
        output = model(waveforms)

    layout = {k: list(v.shape) for k, v in model.state_dict().items()}
    commit = args.commit or subprocess.run(["git", "-C", str(args.official), "rev-parse", "HEAD"],
                                           capture_output=True, text=True).stdout.strip() or "unknown"
    import torchlibrosa

    meta = {"official": "qiuqiangkong/audioset_tagging_cnn pytorch/models.py Cnn14(16000, 512, 160, 64, 50, 8000, 527)",
            "commit": commit, "torchlibrosa": getattr(torchlibrosa, "__version__", "0.1.0"),
            "seed": str(SEED), "weights_sum": repr(weights_sum(state)), "official_layout": json.dumps(layout)}
    tensors = {"waveforms": waveforms, "logmel": captured["logmel"], "embedding": output["embedding"],
               "clipwise": output["clipwise_output"], "logits": captured["logits"],
               "melW": model.logmel_extractor.melW.detach()}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(args.out / "panns.safetensors"), metadata=meta)
    print(f"wrote {args.out / 'panns.safetensors'}: embedding std {output['embedding'].std():.3f}, "
          f"logits std {captured['logits'].std():.3f}")


if __name__ == "__main__":
    main()
