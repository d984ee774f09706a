"""Code-cell and FINAL extraction, truncation (with hypothesis for the edge cases)."""

from hypothesis import given
from hypothesis import strategies as st

from rlm_tui.engine.parse import code_cells, plain_final, truncate


def test_repl_and_python_fences_are_cells_in_order():
    text = "Look first.\n```repl\nx = 1\n```\nthen\n```python\nprint(x)\n```\n"
    cells = code_cells(text)
    assert [c.code for c in cells] == ["x = 1", "print(x)"]
    assert cells[0].preamble == "Look first."
    assert cells[1].preamble == "then"


def test_other_languages_are_prose_not_cells():
    text = '```json\n{"a": 1}\n```\n```bash\nrm -rf /\n```\n```repl\nok = True\n```'
    assert [c.code for c in code_cells(text)] == ["ok = True"]


def test_unterminated_last_fence_runs_to_the_end():
    assert [c.code for c in code_cells("```repl\na = 1\nb = 2")] == ["a = 1\nb = 2"]


def test_no_code_block():
    assert code_cells("I think the answer is 4.") == []


def test_plain_final_outside_code_only():
    assert plain_final("```repl\nFINAL(1)\n```") is None
    marker = plain_final('Done.\nFINAL("a (nested) answer")\n')
    assert marker is not None and marker.kind == "FINAL"
    assert marker.argument == '"a (nested) answer"'
    marker = plain_final("FINAL_VAR(result)")
    assert marker is not None and (marker.kind, marker.argument) == ("FINAL_VAR", "result")


def test_truncate_marks_what_was_cut():
    out = truncate("x" * 100_000, 2000)
    assert out.startswith("x" * 2000)
    assert "98,000 of 100,000 characters cut" in out
    assert truncate("short", 2000) == "short"


@given(st.text(), st.integers(min_value=1, max_value=500))
def test_truncate_never_loses_the_head_and_states_the_cut(text, limit):
    out = truncate(text, limit)
    if len(text) <= limit:
        assert out == text
    else:
        assert out.startswith(text[:limit])
        assert f"{len(text) - limit:,} of {len(text):,} characters cut" in out


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="`"), max_size=40), max_size=5))
def test_every_fenced_block_is_found(bodies):
    bodies = [b.strip("\n") for b in bodies if b.strip()]
    text = "".join(f"prose {i}\n```repl\n{b}\n```\n" for i, b in enumerate(bodies))
    assert [c.code for c in code_cells(text)] == bodies


@given(st.text())
def test_parser_never_raises(text):
    code_cells(text)
    plain_final(text)
