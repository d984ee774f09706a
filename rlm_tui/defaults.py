"""The defaults of a run, each defined once.

``RunConfig`` and ``Limits`` take their field defaults from here, and the CLI's help, the home
screen and the kernel pool read the same names; ``run:`` in the config file overrides them.
"""

MODEL = "demo"
TRUNCATE = 2000
"""Characters of each cell's output the model sees."""
POOL_SIZE = 2
"""Kernels kept warm for sub-agents."""
CELL_TIMEOUT = 120.0
MAX_DEPTH = 3
MAX_ITERATIONS = 20
DEMO_DELAY = 0.02
"""Seconds between the demo model's streamed pieces when a person watches (TUI demo)."""
