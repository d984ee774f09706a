"""The schema of a theme file (see ``themes``), checked with pydantic."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, field_validator
from textual.color import Color, ColorParseError
from textual.theme import Theme

_VARIABLE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class ThemeFile(BaseModel):
    """The schema of a theme file; colours are anything Textual parses ('#RRGGBB', 'red')."""

    model_config = ConfigDict(extra="forbid")

    name: str
    dark: bool = True
    primary: str
    secondary: str | None = None
    accent: str | None = None
    warning: str | None = None
    error: str | None = None
    success: str | None = None
    background: str | None = None
    surface: str | None = None
    panel: str | None = None
    foreground: str | None = None
    variables: dict[str, str] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = value.strip()
        if not value or "," in value:
            raise ValueError("a theme needs a non-empty name without commas")
        return value

    @field_validator(
        "primary",
        "secondary",
        "accent",
        "warning",
        "error",
        "success",
        "background",
        "surface",
        "panel",
        "foreground",
    )
    @classmethod
    def _colour(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            Color.parse(value)
        except ColorParseError:
            raise ValueError(f"not a colour: {value!r} (use e.g. '#4EA1FF')") from None
        return value

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _VARIABLE_NAME.match(key):
                raise ValueError(
                    f"bad variable name {key!r} (lower-case words joined by '-', no '$')"
                )
        return value

    def to_theme(self) -> Theme:
        return Theme(**self.model_dump())
