"""Modal screens: edit a pending cell, launch a sub-agent, set breakpoints, help, the answer."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static, TextArea

from rlm_tui.engine.control import Breakpoints
from rlm_tui.engine.tools import check_free_name
from rlm_tui.errors import UsageError

ResultT = TypeVar("ResultT")


class Modal(ModalScreen[ResultT]):
    """The frame of every dialog here: centered, bordered, at most 90% of the screen high.

    Its rules are its own DEFAULT_CSS: Textual scopes a screen's DEFAULT_CSS to that screen's
    type, so rules naming ``ModalScreen`` in a subclass's never applied (every dialog was
    drawn unframed in the top left corner)."""

    DEFAULT_CSS = """
    Modal { align: center middle; }
    Modal > Vertical {
        width: 90%; max-width: 110; height: auto; max-height: 90%;
        border: thick $primary; background: $panel; padding: 1 2;
    }
    Modal .title { text-style: bold; margin-bottom: 1; width: 100%; }
    Modal .buttons { height: auto; align: right middle; margin-top: 1; }
    Modal Button { margin-left: 1; }
    Modal Checkbox { border: none; padding: 0; }
    EditCellScreen > Vertical { height: 90%; }
    Modal TextArea { height: 1fr; }
    """
    """A checkbox is one line (three, framed: at 80x24 the breakpoints' buttons fell off the
    dialog); the cell editor takes the dialog's height less its hint and buttons."""


class EditCellScreen(Modal[str | None]):
    """Replace the code of the cell waiting at the gate; the kernel runs what is saved here."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save", id="edit.save"),
        # priority: the code editor takes a plain escape to leave itself (tab indents there)
        Binding("escape", "cancel", "Cancel", id="edit.cancel", priority=True),
        Binding("ctrl+e", "external", "$EDITOR", id="edit.external"),
    ]

    def __init__(self, cell_id: str, code: str, editor: str | None = None) -> None:
        super().__init__()
        self.cell_id, self.code, self.editor = cell_id, code, editor

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Edit cell {self.cell_id} before it runs", classes="title")
            yield TextArea.code_editor(self.code, language="python", id="code")
            yield Label("ctrl+s save · escape cancel · ctrl+e open in $EDITOR", classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="save", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_save() if event.button.id == "save" else self.action_cancel()

    def action_save(self) -> None:
        self.dismiss(self.query_one(TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_external(self) -> None:
        editor = self.editor or os.environ.get("VISUAL") or os.environ.get("EDITOR")
        if not editor:
            self.notify(
                "set $EDITOR (or editor: in config.yaml) to edit outside", severity="warning"
            )
            return
        area = self.query_one(TextArea)
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(area.text)
        try:
            with self.app.suspend():
                subprocess.run([*shlex.split(editor), f.name], check=False)
            area.text = Path(f.name).read_text()
        finally:
            os.unlink(f.name)


@dataclass
class LaunchRequest:
    parent_id: str
    prompt: str
    var: str
    context: str | None


class LaunchScreen(Modal[LaunchRequest | None]):
    """Launch a sub-agent by hand under an agent; its answer is bound to a variable there."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="launch.cancel")]

    def __init__(
        self, parent_id: str, selection: str | None, what: str = "the context browser's selection"
    ) -> None:
        super().__init__()
        self.parent_id, self.selection, self.what = parent_id, selection, what

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"Launch a sub-agent under agent {self.parent_id}", classes="title")
            yield Label("Prompt")
            yield Input(placeholder="what the sub-agent should do", id="prompt")
            yield Label("Variable that receives its answer in the parent's kernel")
            yield Input(value="sub_answer", id="var")
            chars = len(self.selection) if self.selection else 0
            offer = (
                f"pass {self.what} as its context ({chars:,} chars)"
                if self.selection
                else "no context (mark lines with v or search in the context pane to pass some)"
            )
            yield Checkbox(
                offer,
                value=bool(self.selection),
                disabled=not self.selection,
                id="use-selection",
            )
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Launch", id="launch", variant="primary")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._launch()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self._launch() if event.button.id == "launch" else self.action_cancel()

    def _launch(self) -> None:
        prompt = self.query_one("#prompt", Input).value.strip()
        var = self.query_one("#var", Input).value.strip()
        if not prompt:
            self.notify("the sub-agent needs a prompt", severity="warning")
            return
        try:
            check_free_name(var, "the answer's variable")
        except UsageError as exc:
            self.notify(str(exc), severity="warning")
            return
        use = self.query_one("#use-selection", Checkbox).value
        self.dismiss(LaunchRequest(self.parent_id, prompt, var, self.selection if use else None))

    def action_cancel(self) -> None:
        self.dismiss(None)


class BreakpointsScreen(Modal[Breakpoints | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="breakpoints.cancel")]

    def __init__(self, current: Breakpoints) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        bp = self.current
        with Vertical():
            yield Label("Breakpoints: hold the run before…", classes="title")
            yield Checkbox("every cell", bp.every_cell, id="every")
            yield Checkbox("a sub-agent starts", bp.subagent_start, id="subagent")
            yield Checkbox("the cell after a failed cell", bp.on_error, id="error")
            yield Label("cells at depth ≥ (empty: off)")
            yield Input("" if bp.min_depth is None else str(bp.min_depth), id="depth")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Apply", id="apply", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id != "apply":
            self.dismiss(None)
            return
        depth = self.query_one("#depth", Input).value.strip()
        if depth and not depth.isdecimal():  # int() refuses "²", which isdigit takes
            self.notify("depth must be a whole number", severity="warning")
            return
        self.dismiss(
            Breakpoints(
                every_cell=self.query_one("#every", Checkbox).value,
                subagent_start=self.query_one("#subagent", Checkbox).value,
                on_error=self.query_one("#error", Checkbox).value,
                min_depth=int(depth) if depth else None,
            )
        )

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextScreen(Modal[None]):
    """A scrollable read-only text (help, the full answer)."""

    DEFAULT_CSS = """
    TextScreen > Vertical { height: 90%; }
    TextScreen VerticalScroll { height: 1fr; }
    TextScreen .title, TextScreen .hint { margin: 0; }
    """
    BINDINGS = [Binding("escape,q,f1", "close", "Close", id="text.close")]

    def __init__(self, title: str, body: Any) -> None:
        super().__init__()
        self.title_text, self.body = title, body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.title_text, classes="title")
            with VerticalScroll():
                yield Static(self.body)
            yield Label("↑↓ PgUp PgDn scroll · escape closes", classes="hint")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)


class ConfirmScreen(Modal[bool]):
    """A yes/no question before something that cannot be undone (stop or quit a live run)."""

    DEFAULT_CSS = "ConfirmScreen > Vertical { max-width: 70; }"
    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question, classes="title")
            yield Label("y / enter: yes    n / escape: no", classes="hint")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def bindings_table(groups: list[tuple[str, list[Any]]], keymap: dict[str, str]) -> Table:
    table = Table(box=None, padding=(0, 2), expand=True)
    table.add_column("key", style="bold")
    table.add_column("action")
    # folded, never cut: the id is what a remapping in config.yaml needs whole
    table.add_column("id (remap in config.yaml)", style="dim", overflow="fold")
    for title, group in groups:
        bindings = [b for b in group if b.description or b.tooltip]  # not Textual's own
        if not bindings:
            continue
        table.add_row(Text(title, style="underline"), "", "")
        for b in bindings:
            key = keymap.get(b.id, b.key) if b.id else b.key
            table.add_row(key, b.description or b.tooltip, b.id or "")
    return table
