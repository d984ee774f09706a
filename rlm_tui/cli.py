"""The command line: ``rlm-tui [tui|demo|run|sessions] ...``.

Every user error ends as one line on stderr and an exit code (2 bad input or no sandbox under
``--sandbox require``, 3 budget stop, 4 model or provider error, 5 kernel failure; 129, 130,
143 stopped by SIGHUP, Ctrl-C, SIGTERM), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import math
import os
import re
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from rlm_tui import __version__, defaults, heap
from rlm_tui.checks import check_query, non_empty_path, not_blank, set_variable
from rlm_tui.errors import RlmError, UsageError
from rlm_tui.paths import config_file, default_sessions_dir
from rlm_tui.redact import redact, redact_logs
from rlm_tui.terminal import STOP_SIGNALS, show_controls, visible

if TYPE_CHECKING:
    from rlm_tui.engine.run import RunConfig

EXIT_BAD_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line and exits 2, a command's under its own
    name (argparse leaves a command's unknown flags to the top-level parser)."""

    def error(self, message: str) -> NoReturn:
        _usage_exit(self.prog, message)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def _closed_streams_to_devnull() -> None:
    """Started with stdout or stderr closed, Python has None there, and ``print(file=None)``
    writes to stdout: the progress and 'session saved' lines went into the --json answer."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - for the process's life


def _usage_exit(prog: str, message: str) -> NoReturn:
    """A bad command line: one line on stderr naming the command's help, exit 2."""
    print(f"{prog}: error: {message} (see {prog} --help)", file=sys.stderr)
    raise SystemExit(EXIT_BAD_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rlm-tui",
        description="A terminal workbench for Recursive Language Models over Jupyter kernels.",
    )
    parser.add_argument("--version", action="version", version=f"rlm-tui {__version__}")
    parser.add_argument(  # `rlm-tui --sessions-dir X` is `rlm-tui tui --sessions-dir X`
        "--sessions-dir", dest="home_sessions_dir", type=_path, default=None, help=argparse.SUPPRESS
    )
    commands = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        argument_default=argparse.SUPPRESS,
        help="run a query headless: progress on stderr, the answer on stdout",
        description="Run an RLM on QUERY. The context stays in the kernel as `context`.",
        epilog=f"Defaults for these flags can be set under run: in {config_file()}.",
    )
    # optional to argparse, required in _dispatch: so that an unknown flag is named first
    run.add_argument("query", nargs="?", help="the question or task (required)")
    run.add_argument(
        "--context-file",
        "-c",
        type=_non_empty,
        metavar="PATH",
        help="text, .json/.jsonl/.yaml, a directory, or - for stdin",
    )
    add_run_options(run)
    run.add_argument(
        "--json", action="store_true", default=False, help="print the answer and usage as JSON"
    )
    run.add_argument("--tui", action="store_true", default=False, help="follow the run in the TUI")

    tui = commands.add_parser("tui", help="open the workbench (the default command)")
    add_sessions_dir(tui)
    tui.add_argument("--session", metavar="SESSION", help="open a saved session")
    add_sandbox_options(tui)  # the new-run form's defaults

    demo = commands.add_parser(
        "demo", help="open the workbench on the nested demo problem (offline demo model)"
    )
    add_sessions_dir(demo)
    demo.add_argument(
        "--delay",
        type=_non_negative_float,
        default=defaults.DEMO_DELAY,
        help=f"seconds between streamed pieces, so the run can be watched "
        f"(default {defaults.DEMO_DELAY})",
    )
    demo.add_argument("--pause", action="store_true", help="hold before every cell")
    add_sandbox_options(demo)

    resume = commands.add_parser(
        "resume",
        argument_default=argparse.SUPPRESS,
        help="go on with a saved session where it stopped (the recorded part costs nothing)",
    )
    resume.add_argument("session", help="session id, id prefix, or directory")
    _add_continue_options(resume)

    ask = commands.add_parser(
        "ask",
        help="ask a follow-up question of a session that answered, in its rebuilt root kernel",
    )
    ask.add_argument("session", help="session id, id prefix, or directory")
    ask.add_argument(
        "question",
        type=_question,
        help="the next question; earlier answers are answer_1, ...",
    )
    _add_continue_options(ask)

    fork = commands.add_parser(
        "fork",
        argument_default=argparse.SUPPRESS,
        help="copy a session up to a cell into a new session and go on from there",
    )
    fork.add_argument("session", help="session id, id prefix, or directory")
    fork.add_argument("--at", required=True, metavar="CELL", help="cell id, e.g. 0:2 or 0.1:1")
    fork.add_argument(
        "--code-file", type=_path, default=None, help="run this code in place of that cell"
    )
    _add_continue_options(fork)

    export = commands.add_parser("export", help="write a session as a notebook or a report")
    export.add_argument("session", help="session id, id prefix, or directory")
    export.add_argument(
        "--format",
        choices=defaults.EXPORT_FORMATS,
        help="default: md for an OUTPUT ending .md, else ipynb",
    )
    export.add_argument("--output", "-o", type=_path, required=True, metavar="PATH")
    add_sessions_dir(export)

    importer = commands.add_parser(
        "import", help="turn a fast-rlm or official rlm (RLMLogger) JSONL log into a session"
    )
    importer.add_argument("log", type=_path, help="the .jsonl log file")
    add_sessions_dir(importer)

    replay = commands.add_parser("replay", help="play a session back in the TUI")
    replay.add_argument("session", help="session id, id prefix, or directory")
    replay.add_argument(
        "--speed",
        type=_positive_float,
        default=1.0,
        help="times the recorded pace (default 1; faster or slower with + and - while it plays)",
    )
    add_sessions_dir(replay)

    sessions = commands.add_parser("sessions", help="list saved sessions")
    add_sessions_dir(sessions)
    sessions.add_argument("--json", action="store_true", help="one JSON object per session")
    return parser


def _default(recorded: bool) -> Callable[[str], str]:
    """How a flag's help names its default: ``recorded`` (resume, fork, ask), the setting the
    session recorded, whatever the default of a new run is."""
    return lambda new: "default: the session's" if recorded else new


def add_run_options(parser: argparse.ArgumentParser, recorded: bool = False) -> None:
    """The settings of a run, shared by ``run``, ``resume``, ``fork`` and ``ask``
    (``recorded``: their help says a flag left out keeps the session's setting).

    No flag has a default here: a flag left out is absent from the parsed arguments, so a new
    run takes RunConfig's default and a resumed one keeps what its session recorded. Each
    flag's ``dest`` is the RunConfig field it sets (budget flags: the Limits field).
    """
    default = _default(recorded)
    parser.add_argument(
        "--model",
        "-m",
        help="litellm model name, 'demo' (offline) or 'replay:SESSION' "
        f"({default(f'default {defaults.MODEL}')})",
    )
    parser.add_argument(
        "--sub-model",
        help=f"model for sub-agents and llm_query ({default('default: --model')})",
    )
    parser.add_argument("--api-base", help="base URL of an OpenAI-compatible server")
    parser.add_argument(
        "--no-stream",
        dest="stream",
        action="store_false",
        help="ask the provider for whole replies (faster on loopback servers)",
    )
    parser.add_argument(
        "--stream",
        dest="stream",
        action="store_true",
        help=f"stream replies ({default('the default')})",
    )
    parser.add_argument(
        "--request-timeout",
        type=_positive_float,
        metavar="SECONDS",
        help=f"seconds one model request may take before it is retried ({default('default 60')})",
    )
    parser.add_argument(
        "--max-concurrency",
        type=_positive_int,
        metavar="N",
        help="model calls at once across the run; more wait their turn "
        f"({default(f'default {defaults.MAX_CONCURRENCY}')})",
    )
    parser.add_argument(
        "--output-schema",
        type=_path,
        dest="output_schema_file",
        metavar="FILE",
        help="a JSON Schema the answer must match (checked in the kernel; a mismatch goes "
        "back to the model)",
    )
    parser.add_argument(
        "--input",
        action="append",
        metavar="NAME=FILE",
        help="another input, loaded like the context into the kernel variable NAME (repeatable)",
    )
    parser.add_argument(
        "--tools",
        type=_path,
        dest="tools_path",
        metavar="FILE.py",
        help="a Python file whose public functions the model can call (they run on this host)",
    )
    parser.add_argument(
        "--compact-at",
        type=_int_at_least(defaults.MIN_COMPACT_AT),
        metavar="TOKENS",
        help="when an agent's history passes TOKENS (characters / 4), replace its earlier "
        "turns by a summary the model writes (the kernel keeps every variable)",
    )
    parser.add_argument(
        "--on-budget",
        choices=["extract", "stop"],
        help="when a budget runs out: one call kept back asks for the best answer so far "
        "(extract; the run ends with status budget, exit 3) or just stop "
        f"({default('default extract')})",
    )
    add_budget_options(parser, recorded)
    parser.add_argument(
        "--truncate",
        type=_int_at_least(defaults.MIN_TRUNCATE),
        help="characters of each cell's output the model sees "
        f"({default(f'default {defaults.TRUNCATE}')})",
    )
    parser.add_argument(
        "--cell-timeout",
        type=_positive_float,
        help="seconds before a cell is interrupted "
        f"({default(f'default {defaults.CELL_TIMEOUT:g}')})",
    )
    parser.add_argument(
        "--memory-limit",
        dest="memory_limit_mb",
        type=_memory_limit,
        metavar="MB",
        help=f"address-space cap of each kernel (at least {defaults.MIN_MEMORY_LIMIT_MB})",
    )
    parser.add_argument(
        "--pool-size",
        type=_non_negative_int,
        help=f"kernels kept warm for sub-agents ({default(f'default {defaults.POOL_SIZE}')}, "
        f"at most {defaults.MAX_POOL_SIZE}, never more than --max-kernels)",
    )
    parser.add_argument(
        "--max-kernels",
        type=_positive_int,
        default=None,
        metavar="N",
        help="kernels alive at once; past it sub-agents queue "
        f"({default('default: from free memory')})",
    )
    add_sessions_dir(parser)
    add_gateway_options(parser, recorded)
    add_sandbox_options(parser, recorded)


def add_sessions_dir(parser: argparse.ArgumentParser) -> None:
    """``--sessions-dir``, the same on every command that saves or reads sessions."""
    parser.add_argument(
        "--sessions-dir",
        type=_path,
        default=None,
        help=f"where sessions are saved (default {default_sessions_dir()})",
    )


KERNEL_NAME_DEFAULT = "default: the gateway's default kernel"


def add_gateway_options(parser: argparse.ArgumentParser, recorded: bool = False) -> None:
    """Kernels on a Jupyter Kernel/Enterprise Gateway instead of this machine."""
    default = _default(recorded)
    group = parser.add_argument_group("kernels on a Jupyter gateway")
    group.add_argument(
        "--kernel-gateway",
        metavar="URL",
        default=os.environ.get("JUPYTER_GATEWAY_URL") or None,
        help="start the run's kernels on this gateway (default $JUPYTER_GATEWAY_URL)",
    )
    group.add_argument(
        "--kernel-gateway-token-env",
        metavar="NAME",
        help="the variable holding the gateway's token "
        f"({default('default JUPYTER_GATEWAY_AUTH_TOKEN')})",
    )
    group.add_argument(
        "--kernel-name",
        help=f"the gateway's kernelspec ({default(KERNEL_NAME_DEFAULT)})",
    )
    group.add_argument(
        "--bridge-host",
        type=_host,
        metavar="ADDRESS",
        help="address of this machine the gateway's kernels reach for sub-calls "
        f"({default('default 127.0.0.1, for a gateway on this machine')})",
    )


def gateway_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The gateway flags as RunConfig fields, after checking the gateway answers and takes
    the token (one line, exit 2 or 5, before any model is called)."""
    if not getattr(args, "kernel_gateway", None):
        return {}
    for name in ("kernel_gateway_token_env", "kernel_name", "bridge_host"):
        setattr(args, name, getattr(args, name, None))  # a flag not given is absent
    from rlm_tui.kernel.gateway import Gateway, probe

    gateway = Gateway.from_settings(
        args.kernel_gateway, args.kernel_gateway_token_env, args.kernel_name
    )
    gateway.bridge_host(args.bridge_host)
    asyncio.run(probe(gateway))
    return {
        "kernel_gateway": args.kernel_gateway,
        "kernel_gateway_token_env": args.kernel_gateway_token_env,
        "kernel_name": args.kernel_name,
        "bridge_host": args.bridge_host,
    }


def add_sandbox_options(parser: argparse.ArgumentParser, recorded: bool = False) -> None:
    """How the kernels are isolated from the machine (see the README's "Sandbox"); when
    resuming, a flag left out keeps the recorded setting."""
    from rlm_tui.kernel.sandbox import SANDBOX_MODES

    default = _default(recorded)
    group = parser.add_argument_group("sandbox (model-written code runs in it)")
    group.add_argument(
        "--sandbox",
        choices=SANDBOX_MODES,
        help="auto: sandbox where the machine allows, else warn; "
        f"require: exit 2 where it cannot; off: no sandbox ({default('default auto')})",
    )
    group.add_argument(
        "--allow-read",
        action="append",
        type=_absolute_path,
        metavar="PATH",
        help="let the kernels read PATH (read-only; repeatable)",
    )
    group.add_argument(
        "--allow-net",
        action="store_true",
        help="let the kernels use the network",
    )
    group.add_argument(
        "--kernel-env",
        action="append",
        type=_set_variable,
        metavar="NAME",
        help="pass the environment variable NAME to the kernels (repeatable)",
    )


def sandbox_options(args: argparse.Namespace) -> dict[str, Any]:
    """The RunConfig fields of the sandbox flags given."""
    names = ("sandbox", "allow_read", "allow_net", "kernel_env")
    given = {name: getattr(args, name, None) for name in names}
    return {name: value for name, value in given.items() if value is not None}


_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _host(text: str) -> str:
    """An IP address, or a host name whose last label is not a number (``999.1.1.1`` is a bad
    address, not a name)."""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(text))
    last = text.rstrip(".").rsplit(".", 1)[-1]
    if len(text) > 253 or not _HOST_NAME.fullmatch(text) or last.isdigit():
        raise argparse.ArgumentTypeError(f"not an IP address or host name: {text!r}")
    return text


def _absolute_path(text: str) -> Path:
    return Path(_non_empty(text)).absolute()


def _add_continue_options(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        f"{parser.description or ''}Every setting the session recorded stays as it was; a flag "
        "given here changes that setting only."
    ).strip()
    add_run_options(parser, recorded=True)
    parser.add_argument("--tui", action="store_true", default=False, help="go on in the TUI")
    parser.add_argument(
        "--headless", action="store_true", default=False, help="go on headless (the default)"
    )
    parser.add_argument(
        "--json", action="store_true", default=False, help="print the answer and usage as JSON"
    )


def add_budget_options(parser: argparse.ArgumentParser, recorded: bool = False) -> None:
    """The budget flags (dest: the Limits field)."""
    default = _default(recorded)
    budget = parser.add_argument_group("budgets (the run stops with exit 3 when one runs out)")
    budget.add_argument(
        "--max-depth",
        type=_non_negative_int,
        help=f"sub-agent depth ({default(f'default {defaults.MAX_DEPTH}')})",
    )
    budget.add_argument(
        "--max-iterations",
        type=_positive_int,
        help=f"model turns per agent ({default(f'default {defaults.MAX_ITERATIONS}')})",
    )
    budget.add_argument("--max-calls", type=_positive_int, help="model calls in all")
    budget.add_argument("--max-prompt-tokens", type=_positive_int)
    budget.add_argument(
        "--max-completion-tokens",
        type=_positive_int,
        help="also sent to the provider as max_tokens (what is left of it)",
    )
    budget.add_argument("--max-cost", type=_positive_float, help="US dollars")
    budget.add_argument(
        "--max-time",
        type=_positive_float,
        help="seconds of the run's time (not counting time held at a breakpoint or paused)",
    )


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings given on the command line, as RunConfig fields (``limits``: a dict)."""
    from rlm_tui.engine.budget import Limits
    from rlm_tui.engine.run import RunConfig

    given = {k: v for k, v in vars(args).items() if v is not None}  # None: not given
    settings = {k: v for k, v in given.items() if k in RunConfig.model_fields and k != "query"}
    limits = {k: v for k, v in given.items() if k in Limits.model_fields}
    if limits:
        settings["limits"] = limits
    return {**settings, **_file_settings(args), **gateway_settings(args)}


def _file_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as files (inputs, tools, an answer schema), each checked now."""
    settings: dict[str, Any] = {}
    if getattr(args, "input", None):
        settings["inputs"] = _named_inputs(args.input)
    if getattr(args, "tools_path", None) is not None:
        from rlm_tui.engine.tools import load_tools

        load_tools(args.tools_path)  # fail on a bad tools file before anything starts
        settings["tools_file"] = str(args.tools_path.resolve())
    if getattr(args, "output_schema_file", None) is not None:
        from rlm_tui.engine.schema import OutputSchema

        settings["output_schema"] = OutputSchema.from_file(args.output_schema_file).schema
    return settings


def _argument(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a shared check (``rlm_tui.checks``): its UsageError becomes
    argparse's one line naming the flag."""

    def checked(text: str) -> Any:
        try:
            return check(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return checked


_set_variable = _argument(set_variable)


_non_empty = _argument(non_empty_path)
_question = _argument(partial(not_blank, problem="the question is empty"))


def _path(text: str) -> Path:
    return Path(_non_empty(text))


def _int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``low`` (and at most ``high``)."""

    def whole_number(text: str) -> int:
        value = _parse(int, text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {text}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high}, got {text}")
        return value

    return whole_number


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)
_memory_limit = _int_at_least(defaults.MIN_MEMORY_LIMIT_MB, defaults.MAX_MEMORY_LIMIT_MB)


def _positive_float(text: str) -> float:
    value = _parse(float, text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = _parse(float, text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def _parse(kind: type, text: str) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def run_config_from_args(args: argparse.Namespace, query: str, check: bool = True) -> Any:
    """A RunConfig from the run options; reads stdin for ``--context-file -``.

    Everything that can be refused is refused here, before a session or a kernel starts;
    ``check=False`` leaves the model names to ``check_models`` (it imports litellm).
    """
    from rlm_tui.engine.run import config_from_settings
    from rlm_tui.settings import run_defaults

    context_value = None
    context_file = getattr(args, "context_file", None)
    if context_file == "-":
        if sys.stdin is None:
            raise UsageError("--context-file -: there is no standard input to read")
        # decoded as a context file is (a byte that is not UTF-8 becomes U+FFFD)
        context_value = sys.stdin.buffer.read().decode("utf-8", errors="replace")
        context_file = None
    elif context_file is not None:
        from rlm_tui.engine.context import context_from_file

        context_from_file(Path(context_file))  # fail on a bad file before anything starts
    given = settings_from_args(args)
    settings = run_defaults()  # the config file's run: defaults, then the flags over them
    limits = settings.pop("limits", None)
    limits = limits.model_dump(exclude_unset=True) if limits is not None else {}
    settings.update(given)
    settings["limits"] = {**limits, **given.get("limits", {})}
    config = config_from_settings(
        settings,
        query=query,
        context_file=context_file,
        context_value=context_value,
    )
    if check:
        check_models(config)
    return config


def check_models(config: Any) -> None:
    """Fail on an unknown model or a bad API base before kernels start."""
    from rlm_tui.models.registry import make_model

    for name in {config.model, config.sub_model} - {None}:
        make_model(name, config.api_base, sessions_dir=config.sessions_dir)


def _named_inputs(given: list[str]) -> dict[str, str]:
    """``--input NAME=FILE`` flags, each file checked like a context file."""
    from rlm_tui.engine.context import context_from_file
    from rlm_tui.engine.tools import check_free_name

    inputs: dict[str, str] = {}
    for item in given:
        name, sep, file = item.partition("=")
        if not sep or not file.strip():
            raise UsageError(f"--input takes NAME=FILE, got {item!r}")
        check_free_name(name)
        if name in inputs:
            raise UsageError(f"--input {name} is given twice")
        context_from_file(Path(file))
        inputs[name] = str(Path(file).resolve())
    return inputs


def main(argv: Sequence[str] | None = None) -> int:
    _closed_streams_to_devnull()
    redact_logs()
    heap.collect_less_often()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = _dispatch(parser, args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except RlmError as exc:
        print(f"rlm-tui: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rlm-tui: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``rlm-tui sessions | head -1``): what it wanted is out
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "run":
        if "query" not in args:
            _usage_exit(f"{parser.prog} run", "the following arguments are required: query")
        try:
            check_query(args.query)
        except UsageError as exc:
            _usage_exit(f"{parser.prog} run", str(exc))
        if args.tui:
            return _tui(config=run_config_from_args(args, args.query))
        return _run_cli(args)
    if args.command == "sessions":
        return _list_sessions(args)
    if args.command in ("resume", "fork", "ask"):
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
            why = "not a regular file" if args.log.exists() else "not found"
            raise UsageError(f"log file {why}: {args.log}")
        directory = import_log(args.log, args.sessions_dir)
        print(directory.name)
        return 0
    if args.command == "replay":
        from rlm_tui.session.store import read_session

        directory = _checked_session(args.session, args.sessions_dir)
        return _tui(events=list(read_session(directory).events), replay_speed=args.speed)
    if args.command == "demo":
        return _tui(config=partial(_demo_config, args), pause=args.pause)
    if args.command in (None, "tui"):
        session = None
        if getattr(args, "session", None):
            from rlm_tui.session.store import find_session

            session = find_session(args.session, args.sessions_dir)
        sessions_dir = getattr(args, "sessions_dir", None) or args.home_sessions_dir
        return _tui(session=session, sessions_dir=sessions_dir, run_options=sandbox_options(args))
    parser.print_help()
    return 0


def _continue(args: argparse.Namespace) -> int:
    """resume / fork / ask: rebuild the recorded state, then go on live (settings changed)."""
    from rlm_tui.engine.resume import ask_run, fork_run, resume_run

    directory = _checked_session(args.session, getattr(args, "sessions_dir", None))
    changes = settings_from_args(args)
    changes.pop("sessions_dir", None)
    if args.command == "fork":
        code = None
        if args.code_file is not None:
            try:
                code = args.code_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"cannot read {args.code_file}: {_reason(exc)}") from None
        run = fork_run(directory, args.at, code, **changes)
        forked = run.config.append_to
        assert forked is not None  # a fork always goes on in its new session
        print(f"rlm-tui: forked into session {forked.name}", file=sys.stderr)
    elif args.command == "ask":
        run = ask_run(directory, args.question, **changes)
    else:
        run = resume_run(directory, **changes)
    if args.tui:
        try:
            return _tui(run=run)
        except BaseException:
            run.abandon()
            raise
    return asyncio.run(_follow_headless(run, args.json))


def _reason(exc: OSError | UnicodeDecodeError) -> str:
    return exc.strerror or str(exc) if isinstance(exc, OSError) else "not UTF-8 text"


def _checked_session(ref: str, sessions_dir: Path | None) -> Path:
    """Find a session and say, one line each, what reading it had to skip (a torn line)."""
    from rlm_tui.session.store import find_session, read_session

    directory = find_session(ref, sessions_dir)
    for problem in read_session(directory).problems:
        print(f"rlm-tui: warning: {problem}", file=sys.stderr)
    return directory


def _demo_config(args: argparse.Namespace) -> RunConfig:
    """The demo's run; made by the app after its first frame (the engine is imported then)."""
    from rlm_tui.engine.run import RunConfig
    from rlm_tui.models.registry import DEMO
    from rlm_tui.settings import run_defaults
    from rlm_tui.tui.home_screen import NESTED_QUERY

    options = run_defaults() | {"model": DEMO, "sub_model": None, "demo_delay": args.delay}
    options |= sandbox_options(args)
    if args.sessions_dir:
        options["sessions_dir"] = args.sessions_dir
    return RunConfig(query=NESTED_QUERY, **options)


def _tui(pause: bool = False, **kwargs: Any) -> int:
    """Run the Textual app; it needs a terminal. ``pause``: hold before every cell."""
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        raise UsageError("the TUI needs a terminal; use 'rlm-tui run' for headless runs")
    from rlm_tui.tui.app import RlmApp

    app = RlmApp(pause=pause, **kwargs)
    app.run()
    return app.return_code or 0


def _run_cli(args: argparse.Namespace) -> int:
    """``rlm-tui run``: the kernel template starts first, so its imports overlap litellm's; the
    answer is printed before the kernels are torn down."""
    from rlm_tui.engine.run import kernel_pool

    show_controls()  # the progress lines draw agents' text: shown, never obeyed
    config = run_config_from_args(args, args.query, check=False)
    if config.kernel_gateway:  # the run makes its kernels on the gateway
        check_models(config)
        return asyncio.run(_run_headless(config, args.json, None))
    pool = kernel_pool(config)
    pool.launch()
    try:
        check_models(config)
    except BaseException:
        pool.abandon()
        raise
    return asyncio.run(_run_headless(config, args.json, pool))


async def _run_headless(config: Any, as_json: bool, pool: Any) -> int:
    """Follow the run; ``pool`` (started early, or None for the run's own) closes after it."""
    from rlm_tui.engine.run import Run

    try:
        return await _follow_headless(Run(config, provider=pool), as_json)
    finally:
        if pool is not None:
            await pool.close()


async def _follow_headless(run: Any, as_json: bool) -> int:
    from rlm_tui.progress import Progress

    progress = Progress()
    run.subscribe(progress)
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int, reason: str) -> None:
        received.append(signum)
        run.stop(reason)

    for signum, reason in STOP_SIGNALS.items():
        loop.add_signal_handler(signum, on_signal, signum, reason)
    try:
        await run.start()
        result = await run.wait()
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        with contextlib.suppress(OSError):  # after a hangup the terminal may be gone
            progress.close()
    if not received:
        _print_result(result, as_json)
        return int(result.exit_code)
    with contextlib.suppress(OSError):
        _print_result(result, as_json)
    return 128 + received[0] if result.status == "stopped" else int(result.exit_code)


def _print_result(result: Any, as_json: bool) -> None:
    value = result.value
    if as_json:
        payload = {
            "status": result.status,
            "answer": value.python() if value else None,
            "answer_is_json": bool(value and value.is_json),
            "answer_type": value.type_name if value else None,
            "reason": result.reason,
            "extracted": result.extracted,
            "usage": result.usage.model_dump(),
            "elapsed": round(result.elapsed, 3),
            "session": str(result.session_dir) if result.session_dir else None,
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    elif value is not None:
        answer = value.python()
        if not isinstance(answer, str):
            answer = (
                json.dumps(answer, ensure_ascii=False, indent=2) if value.is_json else value.repr
            )
        # to a terminal the answer is shown, not obeyed; to a pipe or a file it is as it was
        print(visible(answer) if sys.stdout.isatty() else answer)
    if result.status != "answered":
        how = " (the answer above was extracted from the trajectory)" if result.extracted else ""
        print(f"rlm-tui: {result.status}: {visible(result.reason)}{how}", file=sys.stderr)
    if result.session_dir:
        print(f"rlm-tui: session saved in {result.session_dir}", file=sys.stderr)


def _list_sessions(args: argparse.Namespace) -> int:
    from rlm_tui.session.catalog import list_sessions

    if (
        args.sessions_dir is not None
        and args.sessions_dir.exists()
        and not args.sessions_dir.is_dir()
    ):
        raise UsageError(f"--sessions-dir {args.sessions_dir}: not a directory")
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
            f"${s.cost:.4f}  {_one_line(s.query)[:60]}"
        )
    return 0


def _one_line(text: str) -> str:
    """A saved text for a terminal line: whitespace runs as one space, other control
    characters escaped (a session's query could otherwise recolour the terminal)."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode()
        for c in " ".join(text.split())
    )


if __name__ == "__main__":
    raise SystemExit(main())
