"""``python -m condbench`` (also what ``torchrun -m condbench`` starts)."""
import sys

from .cli import main

sys.exit(main())
