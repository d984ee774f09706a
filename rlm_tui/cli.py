"""The command line: ``rlm-tui [tui|demo|run|sessions] ...``.

Every user error ends as one line on stderr and an exit code (2 bad input or no sandbox under
``--sandbox require``, 3 budget stop, 4 model or provider error, 5 kernel failure; 129, 130,
143 stopped by SIGHUP, Ctrl-C, SIGTERM), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rlm_tui.errors import RlmError, UsageError
from rlm_tui.kernel.sandbox import SANDBOX_MODES

EXIT_BAD_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line and exits 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rlm-tui",
        description="A terminal workbench for Recursive Language Models over Jupyter kernels.",
    )
    commands = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run a query headless: progress on stderr, the answer on stdout",
        description="Run an RLM on QUERY. The context stays in the kernel as `context`.",
    )
    run.add_argument("query", help="the question or task")
    add_run_options(run)
    run.add_argument("--json", action="store_true", help="print the answer and usage as JSON")
    run.add_argument("--tui", action="store_true", help="follow the run in the TUI")

    tui = commands.add_parser("tui", help="open the workbench (the default command)")
    tui.add_argument("--sessions-dir", type=Path, default=None)
    tui.add_argument("--session", metavar="SESSION", help="open a saved session")

    demo = commands.add_parser(
        "demo", help="open the workbench on the nested demo problem (offline demo model)"
    )
    demo.add_argument("--sessions-dir", type=Path, default=None)
    demo.add_argument(
        "--delay",
        type=float,
        default=0.02,
        help="seconds between streamed pieces, so the run can be watched",
    )
    demo.add_argument("--pause", action="store_true", help="hold before every cell")
    add_sandbox_options(demo)

    resume = commands.add_parser(
        "resume",
        help="go on with a saved session where it stopped (the recorded part costs nothing)",
    )
    resume.add_argument("session", help="session id, id prefix, or directory")
    _add_continue_options(resume)

    fork = commands.add_parser(
        "fork", help="copy a session up to a cell into a new session and go on from there"
    )
    fork.add_argument("session", help="session id, id prefix, or directory")
    fork.add_argument("--at", required=True, metavar="CELL", help="cell id, e.g. 0:2 or 0.1:1")
    fork.add_argument("--code-file", type=Path, help="run this code in place of that cell")
    _add_continue_options(fork)

    export = commands.add_parser("export", help="write a session as a notebook or a report")
    export.add_argument("session", help="session id, id prefix, or directory")
    export.add_argument("--format", choices=["ipynb", "md"], default="ipynb")
    export.add_argument("--output", "-o", type=Path, required=True, metavar="PATH")
    export.add_argument("--sessions-dir", type=Path, default=None)

    importer = commands.add_parser(
        "import", help="turn a fast-rlm or official rlm (RLMLogger) JSONL log into a session"
    )
    importer.add_argument("log", type=Path, help="the .jsonl log file")
    importer.add_argument("--sessions-dir", type=Path, default=None)

    replay = commands.add_parser("replay", help="play a session back in the TUI")
    replay.add_argument("session", help="session id, id prefix, or directory")
    replay.add_argument(
        "--speed",
        type=_positive_float,
        default=1.0,
        help="times the recorded pace (default 1; 0 shows it all at once)",
    )
    replay.add_argument("--sessions-dir", type=Path, default=None)

    sessions = commands.add_parser("sessions", help="list saved sessions")
    sessions.add_argument("--sessions-dir", type=Path, default=None)
    sessions.add_argument("--json", action="store_true", help="one JSON object per session")
    return parser


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--context-file",
        "-c",
        metavar="PATH",
        help="text, .json/.jsonl/.yaml, a directory, or - for stdin",
    )
    parser.add_argument(
        "--model",
        "-m",
        default="demo",
        help="litellm model name, 'demo' (offline) or 'replay:SESSION'",
    )
    parser.add_argument("--sub-model", help="model for sub-agents and llm_query (default: --model)")
    parser.add_argument("--api-base", help="base URL of an OpenAI-compatible server")
    parser.add_argument(
        "--no-stream",
        action="store_true",
        help="ask the provider for whole replies (faster on loopback servers)",
    )
    add_budget_options(parser, keep_recorded=False)
    parser.add_argument(
        "--truncate",
        type=_positive_int,
        default=2000,
        help="characters of each cell's output the model sees (default 2000)",
    )
    parser.add_argument(
        "--cell-timeout",
        type=_positive_float,
        default=120.0,
        help="seconds before a cell is interrupted (default 120)",
    )
    parser.add_argument(
        "--memory-limit", type=_positive_int, metavar="MB", help="address-space cap of each kernel"
    )
    parser.add_argument(
        "--pool-size",
        type=_non_negative_int,
        default=2,
        help="kernels kept warm for sub-agents (default 2)",
    )
    parser.add_argument(
        "--sessions-dir",
        type=Path,
        default=None,
        help="where sessions are saved (default ./sessions or $RLM_TUI_SESSIONS)",
    )
    add_sandbox_options(parser)


def add_sandbox_options(parser: argparse.ArgumentParser, keep_recorded: bool = False) -> None:
    """How the kernels are isolated from the machine (see the README's "Sandbox"); when
    resuming, a flag left out keeps the recorded setting."""
    group = parser.add_argument_group("sandbox (model-written code runs in it)")
    group.add_argument(
        "--sandbox",
        choices=SANDBOX_MODES,
        default=None if keep_recorded else "auto",
        help="auto (default): sandbox where the machine allows, else warn; "
        "require: exit 2 where it cannot; off: no sandbox",
    )
    group.add_argument(
        "--allow-read",
        action="append",
        type=Path,
        metavar="PATH",
        help="let the kernels read PATH (read-only; repeatable)",
    )
    group.add_argument(
        "--allow-net",
        action="store_true",
        default=None if keep_recorded else False,
        help="let the kernels use the network",
    )
    group.add_argument(
        "--kernel-env",
        action="append",
        metavar="NAME",
        help="pass the environment variable NAME to the kernels (repeatable)",
    )


def sandbox_options(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields of the sandbox flags given."""
    given = {
        "sandbox": args.sandbox,
        "allow_read": [p.absolute() for p in args.allow_read] if args.allow_read else None,
        "allow_net": args.allow_net,
        "kernel_env": args.kernel_env,
    }
    return {name: value for name, value in given.items() if value is not None}


def _add_continue_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", help="go on with another model")
    parser.add_argument("--sub-model")
    parser.add_argument("--api-base")
    parser.add_argument("--sessions-dir", type=Path, default=None)
    parser.add_argument("--tui", action="store_true", help="go on in the TUI")
    parser.add_argument("--headless", action="store_true", help="go on headless (the default)")
    parser.add_argument("--json", action="store_true", help="print the answer and usage as JSON")
    add_budget_options(parser, keep_recorded=True)
    add_sandbox_options(parser, keep_recorded=True)


def add_budget_options(parser: argparse.ArgumentParser, keep_recorded: bool) -> None:
    """The budget flags; when resuming, a flag left out keeps the recorded limit."""
    budget = parser.add_argument_group("budgets (the run stops with exit 3 when one runs out)")
    default_depth, default_iterations = (None, None) if keep_recorded else (3, 20)
    budget.add_argument(
        "--max-depth",
        type=_non_negative_int,
        default=default_depth,
        help="sub-agent depth (default 3)",
    )
    budget.add_argument(
        "--max-iterations",
        type=_positive_int,
        default=default_iterations,
        help="model turns per agent (default 20)",
    )
    budget.add_argument("--max-calls", type=_positive_int, help="model calls in all")
    budget.add_argument("--max-prompt-tokens", type=_positive_int)
    budget.add_argument("--max-completion-tokens", type=_positive_int)
    budget.add_argument("--max-cost", type=_positive_float, help="US dollars")
    budget.add_argument("--max-time", type=_positive_float, help="seconds of wall time")


LIMIT_FLAGS = (
    "max_depth",
    "max_iterations",
    "max_calls",
    "max_prompt_tokens",
    "max_completion_tokens",
    "max_cost",
    "max_time",
)


def limits_from_args(args: argparse.Namespace, base: Any = None) -> Any:
    """Limits from the flags given, on top of ``base`` (the recorded limits when resuming)."""
    from rlm_tui.engine.budget import Limits

    given = {name: getattr(args, name) for name in LIMIT_FLAGS if getattr(args, name) is not None}
    return (base or Limits()).model_copy(update=given)


def _positive_int(text: str) -> int:
    value = _parse(int, text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = _parse(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _parse(float, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _parse(kind: type, text: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def run_config_from_args(args: argparse.Namespace, query: str) -> Any:
    """A RunConfig from the shared run options; reads stdin for ``--context-file -``."""
    from rlm_tui.engine.run import RunConfig
    from rlm_tui.models.registry import make_model

    context_value = None
    context_file = args.context_file
    if context_file == "-":
        context_value = sys.stdin.read()
        context_file = None
    elif context_file is not None:
        from rlm_tui.engine.context import context_from_file

        context_from_file(Path(context_file))  # fail on a bad file before anything starts
    for name in {args.model, args.sub_model} - {None}:
        make_model(name, args.api_base)  # fail on an unknown model before kernels start
    limits = limits_from_args(args)
    options: dict[str, Any] = {}
    if args.sessions_dir is not None:
        options["sessions_dir"] = args.sessions_dir
    return RunConfig(
        query=query,
        context_file=context_file,
        context_value=context_value,
        model=args.model,
        sub_model=args.sub_model,
        api_base=args.api_base,
        limits=limits,
        truncate=args.truncate,
        cell_timeout=args.cell_timeout,
        memory_limit_mb=args.memory_limit,
        pool_size=args.pool_size,
        stream=not args.no_stream,
        **sandbox_options(args),
        **options,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(parser, args)
    except RlmError as exc:
        print(f"rlm-tui: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rlm-tui: interrupted", file=sys.stderr)
        return 130


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "run":
        config = run_config_from_args(args, args.query)
        if args.tui:
            return _tui(config=config)
        return asyncio.run(_run_headless(config, args.json))
    if args.command == "sessions":
        return _list_sessions(args)
    if args.command in ("resume", "fork"):
        return _continue(args)
    if args.command == "export":
        from rlm_tui.session.export import export

        written = export(
            _checked_session(args.session, args.sessions_dir), args.format, args.output
        )
        print(f"rlm-tui: wrote {written}", file=sys.stderr)
        return 0
    if args.command == "import":
        from rlm_tui.session.importers import import_log

        if not args.log.is_file():
            raise UsageError(f"log file not found: {args.log}")
        directory = import_log(args.log, args.sessions_dir)
        print(directory.name)
        return 0
    if args.command == "replay":
        from rlm_tui.session.store import read_session

        directory = _checked_session(args.session, args.sessions_dir)
        return _tui(events=list(read_session(directory).events), replay_speed=args.speed)
    if args.command == "demo":
        from rlm_tui.engine.control import Breakpoints
        from rlm_tui.engine.run import RunConfig
        from rlm_tui.tui.home_screen import NESTED_QUERY

        options = {"sessions_dir": args.sessions_dir} if args.sessions_dir else {}
        config = RunConfig(
            query=NESTED_QUERY,
            model="demo",
            demo_delay=args.delay,
            **sandbox_options(args),
            **options,
        )
        return _tui(config=config, breakpoints=Breakpoints(every_cell=args.pause))
    if args.command in (None, "tui"):
        session = None
        if getattr(args, "session", None):
            from rlm_tui.session.store import find_session

            session = find_session(args.session, args.sessions_dir)
        return _tui(session=session, sessions_dir=getattr(args, "sessions_dir", None))
    parser.print_help()
    return 0


def _continue(args: argparse.Namespace) -> int:
    """resume / fork: rebuild the recorded state, then go on live."""
    from rlm_tui.engine.recording import Recording
    from rlm_tui.engine.resume import fork_run, resume_run

    directory = _checked_session(args.session, args.sessions_dir)
    base = Recording.from_session(directory).started.limits
    from rlm_tui.engine.budget import Limits

    changes: dict[str, Any] = {"limits": limits_from_args(args, Limits.model_validate(base))}
    changes.update(sandbox_options(args))
    for name in ("model", "sub_model", "api_base"):
        if getattr(args, name):
            changes[name] = getattr(args, name)
    if args.model:
        from rlm_tui.models.registry import make_model

        make_model(args.model, args.api_base)
    if args.command == "fork":
        code = None
        if args.code_file is not None:
            try:
                code = args.code_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"cannot read {args.code_file}: {exc.strerror}") from None
        run = fork_run(directory, args.at, code, **changes)
        print(f"rlm-tui: forked into session {run.config.append_to.name}", file=sys.stderr)
    else:
        run = resume_run(directory, **changes)
    if args.tui:
        return _tui(run=run)
    return asyncio.run(_follow_headless(run, args.json))


def _checked_session(ref: str, sessions_dir: Path | None) -> Path:
    """Find a session and say, one line each, what reading it had to skip (a torn line)."""
    from rlm_tui.session.store import find_session, read_session

    directory = find_session(ref, sessions_dir)
    for problem in read_session(directory).problems:
        print(f"rlm-tui: warning: {problem}", file=sys.stderr)
    return directory


def _tui(**kwargs: Any) -> int:
    """Run the Textual app; it needs a terminal."""
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        raise UsageError("the TUI needs a terminal; use 'rlm-tui run' for headless runs")
    from rlm_tui.tui.app import RlmApp

    RlmApp(**kwargs).run()
    return 0


async def _run_headless(config: Any, as_json: bool) -> int:
    from rlm_tui.engine.run import Run

    return await _follow_headless(Run(config), as_json)


async def _follow_headless(run: Any, as_json: bool) -> int:
    from rlm_tui.progress import Progress

    progress = Progress()
    run.subscribe(progress)
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int, reason: str) -> None:
        received.append(signum)
        run.stop(reason)

    for signum, reason in _STOP_SIGNALS.items():
        loop.add_signal_handler(signum, on_signal, signum, reason)
    try:
        await run.start()
        result = await run.wait()
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        with contextlib.suppress(OSError):  # after a hangup the terminal may be gone
            progress.close()
    if not received:
        _print_result(result, as_json)
        return int(result.exit_code)
    with contextlib.suppress(OSError):
        _print_result(result, as_json)
    return 128 + received[0] if result.status == "stopped" else int(result.exit_code)


_STOP_SIGNALS = {
    signal.SIGINT: "interrupted by Ctrl-C",
    signal.SIGTERM: "terminated",
    signal.SIGHUP: "hung up (the terminal closed)",
}
"""Each stops the run cleanly (kernels down, run_finished written); exit 128 + the signal."""


def _print_result(result: Any, as_json: bool) -> None:
    value = result.value
    if as_json:
        payload = {
            "status": result.status,
            "answer": value.python() if value else None,
            "answer_is_json": bool(value and value.is_json),
            "answer_type": value.type_name if value else None,
            "reason": result.reason,
            "usage": result.usage.model_dump(),
            "elapsed": round(result.elapsed, 3),
            "session": str(result.session_dir) if result.session_dir else None,
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    elif value is not None:
        answer = value.python()
        if isinstance(answer, str):
            print(answer)
        else:
            print(json.dumps(answer, ensure_ascii=False, indent=2) if value.is_json else value.repr)
    if result.status != "answered":
        print(f"rlm-tui: {result.status}: {result.reason}", file=sys.stderr)
    if result.session_dir:
        print(f"rlm-tui: session saved in {result.session_dir}", file=sys.stderr)


def _list_sessions(args: argparse.Namespace) -> int:
    from rlm_tui.session.catalog import list_sessions

    sessions = list_sessions(args.sessions_dir)
    if args.json:
        for entry in sessions:
            print(json.dumps(entry.model_dump(mode="json"), ensure_ascii=False))
        return 0
    if not sessions:
        print("no saved sessions")
        return 0
    for s in sessions:
        print(
            f"{s.id}  {s.status:<11} {s.model:<16} {s.agents:>3} agents {s.cells:>4} cells  "
            f"${s.cost:.4f}  {s.query[:60]}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
