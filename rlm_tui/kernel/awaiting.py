"""Kernel side: helpers usable both ways, ``llm_query(p)`` and ``await llm_query(p)``.

Models prompted like fast-rlm's write ``await llm_query(p)`` and
``await asyncio.gather(*[llm_query(p) for p in parts])``; others call the same helpers plainly.
A plain call must block and return the value (so ``len(llm_query(p))`` works), so the difference
is made before the cell runs: an IPython AST transformer wraps each call that stands where an
awaitable is expected as ``_rlm_aio(f)(...)``. For a helper that is its async form (sent without
holding the kernel's one-call lock, so gathered calls overlap on the host); for anything else it
is ``f`` itself, and ``asyncio.gather`` becomes one that also accepts plain values.

Where an awaitable is expected: the operand of ``await``; the positional arguments of
``gather``, ``wait``, ``wait_for``, ``shield``, ``create_task``, ``ensure_future`` and
``as_completed``; the elements of a list, tuple or comprehension in such a place; and what is
assigned or appended to a name used in such a place in the same cell
(``tasks = [llm_query(p) ...]; await asyncio.gather(*tasks)``). The arguments of any other call
are never such a place: ``await refine(llm_query(q))`` and ``await llm_query(f"{llm_query(q)}")``
block on the inner call and pass its value. Standard library only: the kernel imports it.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import signal
from collections.abc import Callable
from typing import Any

INTERRUPTED = "interrupted"
"""The message of the ``CancelledError`` that ends an awaited cell on an interrupt."""
AIO_NAME = "_rlm_aio"
"""The kernel-namespace name of ``aio_form``, which rewritten calls go through."""
_TAKES_AWAITABLES = {
    "gather",
    "create_task",
    "ensure_future",
    "wait",
    "wait_for",
    "shield",
    "as_completed",
}
_ADDS_TO_NAME = {"append", "extend", "add", "insert"}


class AsyncForms:
    """Each helper's async form, found by identity (helpers can be shadowed or aliased)."""

    def __init__(self) -> None:
        self._forms: dict[int, tuple[Callable[..., Any], Callable[..., Any]]] = {}

    def register(self, plain: Callable[..., Any], form: Callable[..., Any]) -> None:
        self._forms[id(plain)] = (plain, form)

    def __call__(self, f: Any) -> Any:
        """``f``'s async form if it is a helper, a lenient ``gather``, or ``f`` itself."""
        entry = self._forms.get(id(f))
        if entry is not None and entry[0] is f:
            return entry[1]
        if f is asyncio.gather:
            return gather
        return f


def gather(*items: Any, **options: Any) -> Any:
    """``asyncio.gather`` that takes plain values too (a helper result made in an earlier cell)."""
    return asyncio.gather(*(i if inspect.isawaitable(i) else _ready(i) for i in items), **options)


async def _ready(value: Any) -> Any:
    return value


class AwaitRewriter(ast.NodeTransformer):
    """The IPython AST transformer (helpers are told apart at run time, by ``AsyncForms``)."""

    def visit_Module(self, node: ast.Module) -> ast.Module:  # noqa: N802 - ast's visitor name
        # IPython drops a transformer that raises; a cell it cannot read runs unchanged
        try:
            return rewrite(node)
        except Exception:
            return node


def rewrite(tree: ast.Module) -> ast.Module:
    """Wrap every call in an awaitable place as ``_rlm_aio(f)(...)`` (in place; returns ``tree``)."""
    places = _Places()
    for node in ast.walk(tree):
        if isinstance(node, ast.Await):
            places.mark(node.value)
        elif isinstance(node, ast.Call) and _called_name(node) in _TAKES_AWAITABLES:
            for arg in node.args:
                places.mark(arg)
    seen: set[str] = set()
    while places.names - seen:
        fresh = places.names - seen
        seen |= fresh
        for node in ast.walk(tree):
            for value in _values_given_to(node, fresh):
                places.mark(value)
    for call in places.calls:
        call.func = ast.copy_location(
            ast.Call(func=ast.Name(id=AIO_NAME, ctx=ast.Load()), args=[call.func], keywords=[]),
            call.func,
        )
    return ast.fix_missing_locations(tree)


class _Places:
    def __init__(self) -> None:
        self.calls: list[ast.Call] = []
        self._ids: set[int] = set()
        self.names: set[str] = set()

    def mark(self, node: ast.expr) -> None:
        if isinstance(node, ast.Call):
            if id(node) not in self._ids:
                self._ids.add(id(node))
                self.calls.append(node)
            if _called_name(node) in _TAKES_AWAITABLES:
                for arg in node.args:
                    self.mark(arg)
        elif isinstance(node, ast.Starred | ast.Subscript):
            self.mark(node.value)
        elif isinstance(node, ast.List | ast.Tuple | ast.Set):
            for element in node.elts:
                self.mark(element)
        elif isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp):
            self.mark(node.elt)
        elif isinstance(node, ast.IfExp):
            self.mark(node.body)
            self.mark(node.orelse)
        elif isinstance(node, ast.Name):
            self.names.add(node.id)


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _values_given_to(node: ast.AST, names: set[str]) -> list[ast.expr]:
    """What ``node`` assigns, adds or iterates into one of ``names``."""
    if isinstance(node, ast.Assign):
        hit = any(isinstance(t, ast.Name) and t.id in names for t in node.targets)
        return [node.value] if hit else []
    if isinstance(node, ast.AugAssign | ast.AnnAssign):
        target = node.target
        hit = isinstance(target, ast.Name) and target.id in names and node.value is not None
        return [node.value] if hit and node.value is not None else []
    if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
        hit = isinstance(node.target, ast.Name) and node.target.id in names
        return [node.iter] if hit else []
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _ADDS_TO_NAME
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in names
        and node.args
    ):
        return [node.args[-1]]
    return []


def install(shell: Any) -> None:
    """Add the rewriter to an IPython shell (once; a re-run install replaces it)."""
    kept = [t for t in shell.ast_transformers if type(t).__name__ != AwaitRewriter.__name__]
    shell.ast_transformers[:] = [*kept, AwaitRewriter()]
    kernel = getattr(shell, "kernel", None)
    if kernel is not None and hasattr(kernel, "_cancel_on_sigint"):
        interrupt_awaits(kernel)


def interrupt_awaits(kernel: Any) -> None:
    """Make an interrupt stop an awaited cell at once.

    ipykernel (7.4) cancels an awaited cell on SIGINT through a callback on its ``io_loop``,
    which is not the loop running the cell, so the cancel waits for the cell's next wake-up:
    ``await asyncio.sleep(30)`` ran its 30 s. This cancels it from the loop that runs it,
    with ``INTERRUPTED`` as the message, so the host tells it from a cell's own cancel.
    """

    @contextlib.contextmanager
    def cancel_on_sigint(future: asyncio.Future[Any]) -> Any:
        loop = asyncio.get_running_loop()

        def interrupt(*_: Any) -> None:
            loop.call_soon_threadsafe(future.cancel, INTERRUPTED)

        saved = signal.signal(signal.SIGINT, interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, saved)

    kernel._cancel_on_sigint = cancel_on_sigint
