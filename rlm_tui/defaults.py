"""The defaults of a run, each defined once.

``RunConfig`` and ``Limits`` take their field defaults from here, and the CLI's help, the home
screen and the kernel pool read the same names; ``run:`` in the config file overrides them.
"""

MODEL = "demo"
TRUNCATE = 2000
"""Characters of each cell's output the model sees."""
MIN_TRUNCATE = 100
"""Less output than this tells the model nothing it can act on."""
MIN_COMPACT_AT = 100
"""The smallest history (in tokens) worth replacing by a summary."""
POOL_SIZE = 2
"""Kernels kept warm for sub-agents."""
MAX_POOL_SIZE = 16
"""The most ``pool_size`` may ask for: each warm kernel is a process started ahead of need, and
a fan-out wider than the reserve starts the rest on demand (~0.14 s each). The reserve is
also never more than the kernels a run may hold at once (``max_kernels``)."""
CELL_TIMEOUT = 120.0
MIN_MEMORY_LIMIT_MB = 64
"""The smallest address-space cap a kernel starts under (Python with IPython needs ~50 MB)."""
MAX_MEMORY_LIMIT_MB = (2**63 - 1) // 2**20
"""The largest cap setrlimit takes: its bytes must fit in a C long."""
KERNEL_MAX_TASKS = 512
"""Processes and threads a sandboxed kernel may hold at once, its cells' children included
(the ``pid_max`` of its PID namespace, Linux 6.14+): a fork bomb in a cell stops there."""
MAX_DEPTH = 3
MAX_ITERATIONS = 20
MAX_CONCURRENCY = 32
"""Model calls in flight across a run: a batch of 32 in one round. Against the loopback
server, 64 calls of 0.3 s took 2.8 s at 8, 1.8 s at 16, 1.0 s at 32, 0.6 s at 64 (streamed);
past 32, whole replies are bound by litellm's CPU per call and providers' rate limits bite
(their 429s are retried after Retry-After)."""
DEMO_DELAY = 0.02
"""Seconds between the demo model's streamed pieces when a person watches (TUI demo)."""
THEME = "rlm-dark"
"""The theme when the config file names none."""
EXPORT_FORMATS = ("ipynb", "md")
"""What ``rlm-tui export`` writes: a notebook, or a Markdown report."""
