"""The golden scripts' ``seeded_state`` (``tools/golden/seeded_weights.py``), for fixtures whose weights are
redrawn from a stored layout and seed rather than stored."""
import importlib.util
from pathlib import Path

_PATH = Path(__file__).parents[1] / "tools" / "golden" / "seeded_weights.py"
_spec = importlib.util.spec_from_file_location("seeded_weights", _PATH)
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)

seeded_state = _module.seeded_state
weights_sum = _module.weights_sum
