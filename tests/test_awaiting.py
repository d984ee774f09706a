"""The rewrite that lets helpers be awaited: which calls become async forms, which stay plain."""

from __future__ import annotations

import ast
import asyncio

import pytest

from rlm_tui.kernel.awaiting import AsyncForms, AwaitRewriter, gather, rewrite


def rewritten(code: str) -> str:
    return ast.unparse(rewrite(ast.parse(code)))


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ('x = await llm_query("a")', "x = await _rlm_aio(llm_query)('a')"),
        (
            "r = await asyncio.gather(*[llm_query(p) for p in parts])",
            "r = await _rlm_aio(asyncio.gather)(*[_rlm_aio(llm_query)(p) for p in parts])",
        ),
        (
            "tasks = [rlm_query(p) for p in parts]\nr = await asyncio.gather(*tasks)",
            "tasks = [_rlm_aio(rlm_query)(p) for p in parts]\n"
            "r = await _rlm_aio(asyncio.gather)(*tasks)",
        ),
        (
            "ts = []\nfor p in ps:\n    ts.append(lookup(p))\nr = await asyncio.gather(*ts)",
            "ts = []\nfor p in ps:\n    ts.append(_rlm_aio(lookup)(p))\n"
            "r = await _rlm_aio(asyncio.gather)(*ts)",
        ),
        (
            "async def f(c):\n    return await llm_query(c)",
            "async def f(c):\n    return await _rlm_aio(llm_query)(c)",
        ),
        (
            't = asyncio.create_task(llm_query("x"))',
            "t = asyncio.create_task(_rlm_aio(llm_query)('x'))",
        ),
    ],
)
def test_calls_where_an_awaitable_is_expected_take_the_async_form(code: str, expected: str) -> None:
    assert rewritten(code) == expected


def test_plain_calls_and_the_arguments_of_other_calls_stay_blocking() -> None:
    code = (
        'y = llm_query("q")\nn = len(rlm_query("r"))\nz = await llm_query(f"{llm_query(y)}")\n'
        'r = await refine(llm_query("draft"))\n'
        "t = await loop.run_in_executor(None, lambda: llm_query(y))"
    )
    assert rewritten(code) == (
        "y = llm_query('q')\nn = len(rlm_query('r'))\n"
        "z = await _rlm_aio(llm_query)(f'{llm_query(y)}')\n"
        "r = await _rlm_aio(refine)(llm_query('draft'))\n"
        "t = await _rlm_aio(loop.run_in_executor)(None, lambda: llm_query(y))"
    )


def test_async_forms_are_found_by_identity_and_gather_takes_plain_values() -> None:
    def plain(x: str) -> str:
        return x

    async def form(x: str) -> str:
        return x + "!"

    forms = AsyncForms()
    forms.register(plain, form)
    assert forms(plain) is form
    assert forms(len) is len
    assert forms(asyncio.gather) is gather

    async def main() -> list[str]:
        return await gather(form("a"), "made earlier")

    assert asyncio.run(main()) == ["a!", "made earlier"]


def test_the_transformer_rewrites_a_whole_cell() -> None:
    tree = ast.parse('x = await llm_query("a")')
    assert ast.unparse(AwaitRewriter().visit(tree)) == "x = await _rlm_aio(llm_query)('a')"
