"""The cell log on its own: virtual rendering of thousands of cells, selection, folding, copy."""

from __future__ import annotations

import pytest
from rich.console import Console
from rich.style import Style
from textual.app import App, ComposeResult

from rlm_tui.events import (
    AgentStarted,
    CellFinished,
    CellOutput,
    CellProposed,
    CellStarted,
    ModelDelta,
    ModelRequest,
)
from rlm_tui.session.projection import RunView
from rlm_tui.tui.cell_log import CellLog, output_text, tail_lines
from rlm_tui.tui.code_view import code_strips, code_syntax

pytestmark = pytest.mark.timeout(60)


def many_cells(n: int) -> RunView:
    view = RunView()
    view.apply(AgentStarted(agent_id="0", query="q", model="m"))
    for i in range(1, n + 1):
        view.apply(
            CellProposed(
                agent_id="0",
                cell_id=f"0:{i}",
                step=i,
                index=i,
                preamble=f"Step {i}: let me look.\nThen count.",
                code=f"x = {i}\nfor k in range(3):\n    print(k * x)",
            )
        )
        view.apply(
            CellFinished(
                agent_id="0",
                cell_id=f"0:{i}",
                status="ok",
                duration=0.01,
                output="".join(f"{k * i}\n" for k in range(3)),
            )
        )
    return view


class LogApp(App[None]):
    def compose(self) -> ComposeResult:
        yield CellLog()


async def test_thousands_of_cells_render_only_what_is_visible():
    view = many_cells(5000)
    app = LogApp()
    async with app.run_test(size=(100, 30)) as pilot:
        log = app.query_one(CellLog)
        log.show(view)
        await pilot.pause()
        assert len(log.cells) == 5000
        assert log.current.cell_id == "0:5000"  # follows the newest cell
        assert log.renders < 40, log.renders  # a screenful, not 5000 cells
        assert log.scroll_offset.y == log.max_scroll_y > 0
        log.action_first()
        await pilot.pause()
        assert log.current.cell_id == "0:1" and log.scroll_offset.y == 0
        assert log.renders < 80
        for _ in range(5):
            log.action_move(1)
        await pilot.pause()
        assert log.current.cell_id == "0:6" and not log.follow
        assert log.select_cell("0:2500")
        await pilot.pause()
        assert log.current.cell_id == "0:2500"
        top = log._offsets[log.selected]
        assert log.scroll_offset.y <= top < log.scroll_offset.y + log.size.height
        assert log.renders < 150


async def test_heights_become_exact_as_cells_are_painted():
    view = many_cells(30)
    app = LogApp()
    async with app.run_test(size=(60, 20)) as pilot:
        log = app.query_one(CellLog)
        log.show(view)
        for i in range(30):
            log._select(i)
            await pilot.pause()
        exact = [len(log._strips(i)) for i in range(30)]
        assert log._heights == exact
        assert log.virtual_size.height == sum(exact)


async def test_fold_copy_and_streaming_output():
    view = many_cells(3)
    app = LogApp()
    async with app.run_test(size=(80, 24)) as pilot:
        log = app.query_one(CellLog)
        log.show(view)
        await pilot.pause()
        log.focus()
        before = log.virtual_size.height
        await pilot.press("enter")  # unfold the model's text before the cell
        assert log.virtual_size.height == before + 1
        await pilot.press("enter")
        assert log.virtual_size.height == before
        await pilot.press("c")
        assert app.clipboard == view.cells["0:3"].code
        await pilot.press("o")
        assert app.clipboard == "0\n3\n6\n"
        # a new cell streams in; the log follows it
        await pilot.press("f")
        view.apply(CellProposed(agent_id="0", cell_id="0:4", step=4, index=4, code="slow()"))
        view.apply(CellStarted(agent_id="0", cell_id="0:4", code="slow()"))
        view.apply(CellOutput(agent_id="0", cell_id="0:4", text="first line\n"))
        log.refresh_cells()
        await pilot.pause()
        assert log.current.cell_id == "0:4"
        view.apply(CellOutput(agent_id="0", cell_id="0:4", text="second line\n"))
        log.refresh_cells()
        await pilot.pause()
        lines = [log.render_line(y).text for y in range(log.size.height)]
        assert any("second line" in line for line in lines)
        assert any("running" in line for line in lines)


def test_the_end_of_the_models_view_is_marked():
    output = "a" * 50 + "\n" + "b" * 50 + "\n"
    view = "a" * 50 + "\n... [output truncated: 52 of 102 characters cut]"
    text = output_text(output, view, len(output)).plain
    assert "the model's view ends here: 50 chars shown, 52 cut" in text
    assert text.index("aaa") < text.index("view ends") < text.index("bbb")
    assert "view ends" not in output_text(output, output, len(output)).plain
    kept = output_text("x\n", "x\n", total_chars=1_000_000).plain
    assert "999,998 more chars were printed" in kept


async def test_a_streamed_token_re_renders_only_the_reply_and_output_only_its_cell():
    """Slices: a delta re-renders the reply in progress, an output line its own cell; neither
    lays the screen out again (the log grows by its scrollbar alone)."""
    view = many_cells(200)
    app = LogApp()
    async with app.run_test(size=(100, 30)) as pilot:
        log = app.query_one(CellLog)
        log.show(view)
        await pilot.pause()
        view.apply(ModelRequest(agent_id="0", call_id="c", step=201, model="m"))
        view.apply(ModelDelta(agent_id="0", call_id="c", text="I will now count"))
        log.update((), {"0"})  # a reply starts: the log gets one more item
        await pilot.pause()
        assert log.streams == ["0"] and "~0" in log._index
        renders, layouts = log.renders, log._layout_updates
        for word in [" the", " R's", "\nin code", "\nand print them"]:
            view.apply(ModelDelta(agent_id="0", call_id="c", text=word))
            log.update((), {"0"})
            await pilot.pause()
        assert log.renders - renders == 4  # the reply, once per token: no cell again
        assert "and print them" in "".join(s.text for s in log._strips(len(log.cells)))
        view.apply(CellStarted(agent_id="0", cell_id="0:200", code="x = 200"))
        renders = log.renders
        for line in range(5):
            view.apply(CellOutput(agent_id="0", cell_id="0:200", text=f"line {line}\n"))
            log.update({"0:200"}, ())
            await pilot.pause()
        assert log.renders - renders == 5
        assert "line 4" in "".join(s.text for s in log._strips(199))
        assert log.scroll_offset.y == log.max_scroll_y  # still following the end
        assert log._layout_updates == layouts  # no layout of the screen was asked for


def test_tail_lines_of_a_long_reply():
    assert tail_lines("a\nb\nc\nd\n", 2) == "c\nd"
    assert tail_lines("one line", 3) == "one line"
    assert tail_lines("x\n" * 1_000_000 + "end", 2) == "x\nend"


CODE_CORPUS = [
    "",
    "x = 1",
    "\n\nx = 1\n\n",
    "def f(a):\n\treturn a  # a tab\n",
    "print('é 日本語 wide characters')\n\n\nz = 3",
    "s = '" + "long " * 60 + "'\nprint(s)",
    "a = 1   \n   b = 2  ",
    "\x1b[31mred\x1b[0m = 1",
    "x = '''a string\non lines'''",
    "fruits = [" + ", ".join(f"'{n}'" for n in ["Apple", "Apricot", "Banana"] * 12) + "]",
    "w = 'a' * 3 + '" + "x" * 70 + "'      \t   # a long word, then spaces past the edge",
    "names = ['日本語の名前', 'Ünïcödé', 'emoji 🍎🍌'] * 6",
    "for i in range(10):\n    if i % 2:\n        print(i)  # odd\n    else:\n        pass",
]


@pytest.mark.parametrize("dark, background", [(True, "#1e1e1e"), (False, "default")])
@pytest.mark.parametrize("width", [12, 40, 118])
def test_code_is_drawn_as_richs_syntax_draws_it(dark: bool, background: str, width: int) -> None:
    """``code_strips`` is a faster path to the very cells (character and style) ``Syntax``
    gives: wrapping, wide characters, tabs, control codes, blank lines, both themes."""
    console = Console(width=width + 10, color_system="truecolor", force_terminal=True)
    under = Style(color="#e0e0e0", bgcolor="#202020")

    def cells(lines: list) -> list[list[tuple[str, Style | None]]]:
        return [[(ch, seg.style) for seg in line for ch in seg.text] for line in lines]

    for code in CODE_CORPUS:
        options = console.options.update_width(width)
        syntax = console.render_lines(code_syntax(code, dark, background), options, style=under)
        fast = code_strips(code, width, dark, background, under)
        assert cells(fast) == cells(syntax), code
