"""Resume figures: rebuild a 200-cell session (replies served from the record, cells run
again in a fresh kernel) up to where it stopped. Prints JSON."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from scripted import ScriptedModel, cell  # noqa: E402

from rlm_tui.engine.budget import Limits  # noqa: E402
from rlm_tui.engine.resume import resume_run  # noqa: E402
from rlm_tui.engine.run import Run, RunConfig  # noqa: E402

CELLS = 200
STEPS = [cell(f"x{i} = {i} * 2\nprint(x{i})") for i in range(CELLS)] + [cell("FINAL(x199)")]


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = RunConfig(
            query="q",
            sessions_dir=Path(tmp),
            limits=Limits(max_calls=CELLS, max_iterations=500),
            on_budget="stop",
        )
        stopped = await Run(config, model=ScriptedModel({"q": STEPS})).execute()
        assert stopped.status == "budget"
        assert stopped.session_dir is not None
        started = time.perf_counter()
        run = resume_run(
            stopped.session_dir,
            live_model=ScriptedModel({"q": STEPS}),
            limits=Limits(max_calls=CELLS + 1, max_iterations=500),
            on_budget="stop",
        )
        result = await run.execute()
        elapsed = time.perf_counter() - started
        assert result.status == "answered" and result.answer == 398, result.reason
    print(json.dumps({"resume_200_cells_s": round(elapsed, 4)}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
