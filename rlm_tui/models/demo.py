"""The offline demo model: canned text, real work.

Only the text it writes is canned. The code it writes runs in real kernels, its sub-agents are
real agents with their own kernels, and the counts in its answers are computed there. On a
query it has no plan for, it explores the context with real code and says plainly that a real
model is needed. It is labelled "demo (offline)" wherever a model name shows.
"""

from __future__ import annotations

import asyncio
import re

from rlm_tui.models.base import CallInfo, Completion, DeltaCallback, Message

NAME = "demo (offline)"

FRUITS = [
    "Apple",
    "Apricot",
    "Avocado",
    "Banana",
    "Blackberry",
    "Blackcurrant",
    "Blueberry",
    "Boysenberry",
    "Cantaloupe",
    "Cherry",
    "Clementine",
    "Coconut",
    "Cranberry",
    "Currant",
    "Date",
    "Dragonfruit",
    "Durian",
    "Elderberry",
    "Feijoa",
    "Fig",
    "Gooseberry",
    "Grape",
    "Grapefruit",
    "Guava",
    "Honeydew",
    "Jackfruit",
    "Jujube",
    "Kiwi",
    "Kumquat",
    "Lemon",
    "Lime",
    "Lychee",
    "Mango",
    "Mandarin",
    "Mulberry",
    "Nectarine",
    "Orange",
    "Papaya",
    "Passionfruit",
    "Peach",
    "Pear",
    "Persimmon",
    "Pineapple",
    "Plum",
    "Pomegranate",
    "Quince",
    "Raspberry",
    "Rambutan",
    "Starfruit",
    "Strawberry",
]
COUNTRIES = [
    *[
        "Argentina",
        "Australia",
        "Austria",
        "Brazil",
        "Bulgaria",
        "Cameroon",
        "Canada",
        "Chile",
        "Croatia",
        "Cuba",
        "Denmark",
        "Egypt",
        "Eritrea",
        "Estonia",
        "France",
        "Germany",
        "Greece",
        "Hungary",
        "Iceland",
        "India",
        "Iran",
        "Iraq",
        "Ireland",
        "Israel",
        "Italy",
        "Japan",
        "Kenya",
        "Luxembourg",
        "Morocco",
        "Mexico",
        "Nigeria",
        "Norway",
        "Peru",
        "Portugal",
        "Qatar",
        "Romania",
        "Russia",
        "Rwanda",
        "Serbia",
        "Singapore",
        "Spain",
        "Sweden",
        "Switzerland",
        "Turkey",
        "Uruguay",
        "Venezuela",
        "Vietnam",
    ],
    "New Zealand",
    "Sri Lanka",
    "United Kingdom",
]
ANIMALS = [
    "Aardvark",
    "Alligator",
    "Armadillo",
    "Badger",
    "Bear",
    "Beaver",
    "Buffalo",
    "Camel",
    "Caribou",
    "Cheetah",
    "Chimpanzee",
    "Cobra",
    "Crocodile",
    "Deer",
    "Dolphin",
    "Donkey",
    "Eagle",
    "Ferret",
    "Flamingo",
    "Frog",
    "Giraffe",
    "Gorilla",
    "Hamster",
    "Hippopotamus",
    "Horse",
    "Jaguar",
    "Kangaroo",
    "Koala",
    "Leopard",
    "Lion",
    "Lobster",
    "Marmot",
    "Otter",
    "Panther",
    "Parrot",
    "Porcupine",
    "Rabbit",
    "Raccoon",
    "Rhinoceros",
    "Salamander",
    "Scorpion",
    "Shark",
    "Sparrow",
    "Squirrel",
    "Tiger",
    "Tortoise",
    "Turkey",
    "Vulture",
    "Walrus",
    "Zebra",
]
CATEGORIES: dict[str, list[str]] = {"fruits": FRUITS, "countries": COUNTRIES, "animals": ANIMALS}
_CATEGORY_WORDS = {"fruit": "fruits", "countr": "countries", "animal": "animals"}


def categories_in(query: str) -> list[str]:
    """The known categories a query names, in the order it names them."""
    lowered = query.lower()
    found = [(lowered.find(stem), name) for stem, name in _CATEGORY_WORDS.items()]
    return [name for pos, name in sorted(found) if pos >= 0]


def _is_count_r_task(query: str) -> bool:
    q = query.lower()
    return "name" in q and "count" in q and re.search(r"\br\b|\br's\b|letter r", q) is not None


class DemoModel:
    """Scripted replies keyed by the query and the step; streamed like a real model."""

    name = NAME
    is_demo = True

    def __init__(self, delay: float = 0.0, chunk: int = 24) -> None:
        self.delay = delay
        self.chunk = chunk

    async def complete(
        self, messages: list[Message], info: CallInfo, on_delta: DeltaCallback | None = None
    ) -> Completion:
        if info.purpose == "llm_query":
            text = _llm_query_reply(str(messages[-1].get("content", "")))
        else:
            text = self._agent_reply(info, messages)
        await self._stream(text, on_delta)
        prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
        return Completion(
            text=text,
            prompt_tokens=max(1, prompt_chars // 4),
            completion_tokens=max(1, len(text) // 4),
            cost=0.0,
            model=NAME,
        )

    async def aclose(self) -> None:
        return None

    async def _stream(self, text: str, on_delta: DeltaCallback | None) -> None:
        if on_delta is None:
            return
        for start in range(0, len(text), self.chunk):
            on_delta(text[start : start + self.chunk])
            if self.delay:
                await asyncio.sleep(self.delay)
        await asyncio.sleep(0)

    def _agent_reply(self, info: CallInfo, messages: list[Message]) -> str:
        categories = categories_in(info.query)
        if _is_count_r_task(info.query) and len(categories) > 1:
            plan = _nested_plan(categories)
        elif _is_count_r_task(info.query) and len(categories) == 1:
            plan = _single_plan(categories[0])
        else:
            plan = _explore_plan(info.query)
        step = min(info.step, len(plan))
        last_feedback = str(messages[-1].get("content", "")) if info.step > 1 else ""
        if "Error" in last_feedback or "skipped" in last_feedback:
            return _retry(plan, step)
        return plan[step - 1]


def _cell(prose: str, code: str) -> str:
    return f"{prose}\n```repl\n{code.strip()}\n```"


def _retry(plan: list[str], step: int) -> str:
    """After a failed or skipped cell, run every cell of the plan so far again, in one go."""
    codes = [m.group(1).strip() for reply in plan[:step] for m in _CODE.finditer(reply)]
    return _cell(
        "That did not work as planned; I'll redo the steps so far in one cell.", "\n\n".join(codes)
    )


_CODE = re.compile(r"```repl\n(.*?)\n```", re.DOTALL)


def _nested_plan(categories: list[str]) -> list[str]:
    return [
        _cell(
            "[offline demo model] First, a look at what is in the kernel.",
            "print(type(context).__name__, len(context))\nSHOW_VARS()",
        ),
        _cell(
            f"Each of the {len(categories)} categories is an independent task, so I will give "
            "each one to its own sub-agent and assemble their dictionaries in code.",
            f"""
categories = {categories!r}
prompts = [
    f"Generate 50 names of {{c}} and count the number of R in each name. "
    "Return a dictionary mapping each name to its count."
    for c in categories
]
results = rlm_query_batched(prompts)
nested = dict(zip(categories, results))
print({{c: (type(d).__name__, len(d)) for c, d in nested.items()}})
""",
        ),
        _cell(
            "Every sub-agent returned a dict. I check them in code and return the nested dict.",
            """
assert all(isinstance(d, dict) and len(d) == 50 for d in nested.values())
assert all(n == name.lower().count("r") for d in nested.values() for name, n in d.items())
FINAL_VAR("nested")
""",
        ),
    ]


def _single_plan(category: str) -> list[str]:
    names = CATEGORIES[category]
    return [
        _cell(
            f"[offline demo model] I'll write down 50 {category} and let the kernel check them.",
            f"names = {names!r}\nprint(len(names), 'names,', len(set(names)), 'distinct')",
        ),
        _cell(
            "Now I count the R's in code, not by hand, and return the dictionary.",
            'counts = {name: name.lower().count("r") for name in names}\n'
            'print(sum(counts.values()), "R\'s in total")\n'
            'FINAL_VAR("counts")',
        ),
    ]


def _explore_plan(query: str) -> list[str]:
    return [
        _cell(
            "[offline demo model] I have no plan for this query, but I can explore the context.",
            """
print(type(context).__name__, len(context))
print(repr(context[:500]) if isinstance(context, str) else repr(list(context)[:20])[:500])
""",
        ),
        _cell(
            "Some statistics, computed in the kernel.",
            """
import collections, re
if isinstance(context, str):
    text = context
elif isinstance(context, dict):
    text = "\\n".join(map(str, context.values()))
else:
    text = "\\n".join(map(str, context))
words = re.findall(r"[A-Za-z']+", text.lower())
top = [w for w, _ in collections.Counter(w for w in words if len(w) > 3).most_common(5)]
summary = {"characters": len(text), "lines": len(text.splitlines()), "words": len(words),
           "top_words": top}
print(summary)
""",
        ),
        _cell(
            "That is as far as an offline demo can go.",
            f"""
FINAL(
    "[offline demo model] I explored the context: "
    f"{{summary['characters']:,}} characters, {{summary['lines']:,}} lines, "
    f"{{summary['words']:,}} words; frequent words: {{', '.join(summary['top_words']) or 'none'}}. "
    "Answering {_escape(query)!s} needs a real model: run with --model NAME "
    "(e.g. --model gpt-4o-mini with OPENAI_API_KEY set, or --api-base for a local server)."
)
""",
        ),
    ]


def _escape(query: str) -> str:
    """The query, shortened, made safe to sit inside a double-quoted Python string."""
    short = " ".join(query.split())
    short = short if len(short) <= 120 else short[:117] + "..."
    return "'" + short.replace("\\", "/").replace('"', "'") + "'"


def _llm_query_reply(prompt: str) -> str:
    return (
        f"[offline demo model] A real model would answer this {len(prompt):,}-character prompt; "
        "the demo has no canned answer for it."
    )
