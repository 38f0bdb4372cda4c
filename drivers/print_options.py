"""Print options: what a client may set on one print job, declared by the driver that prints it.

InvenTree lets each label driver declare its printing options (a DRF serializer); here a driver
declares them as plain data (`LabelPrinterDriver.PRINT_OPTIONS`) and the agent derives from them
the print API's validation (a 400 keyed by option name), its `OPTIONS` metadata and its OpenAPI
description. A validated job's options reach the driver as `PrintJob.options`, typed (int, bool or
the choice's value) and only for the options the client sent or that have a `default`.

Every label printer takes the generic options: `copies`, and the render options `threshold`,
`dither` and `rotation`, which the agent applies when it draws the pages. A driver adds only what
it really does with a job (a ZPL darkness, an ESC/POS cut), under names that do not clash.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

PrintOptionType = Literal["integer", "boolean", "choice", "string"]
OptionValue = int | bool | str
# Option names are query-string and form-field names: lower-case words joined by underscores.
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
MAX_COPIES = 1000


@dataclass(frozen=True, slots=True)
class PrintOption:
    """One option of a print job, in the terms of a DRF serializer field.

    `default` is what the job gets when the client leaves the option out; None leaves it out of
    `PrintJob.options` too, so the driver falls back on the machine's own setting. Integers may
    have bounds; a choice lists `(value, label)` pairs whose values are all ints or all strings.
    """

    name: str
    type: PrintOptionType
    label: str
    help_text: str = ""
    default: OptionValue | None = None
    choices: tuple[tuple[OptionValue, str], ...] = ()
    min_value: int | None = None
    max_value: int | None = None
    max_length: int | None = None

    def problems(self) -> list[str]:
        """What is wrong with this declaration (empty when it is sound)."""
        found: list[str] = []
        if not _NAME.match(self.name):
            found.append(f"option name {self.name!r} is not lower_case_with_underscores")
        if self.type == "choice":
            if not self.choices:
                found.append(f"choice option {self.name!r} has no choices")
            elif len({type(value) for value, _ in self.choices}) > 1:
                found.append(f"choice option {self.name!r} mixes value types")
            elif any(isinstance(value, bool) for value, _ in self.choices):
                found.append(f"choice option {self.name!r} has true/false values: make it boolean")
            if self.default is not None and self.default not in self.values():
                found.append(f"the default of {self.name!r} is not one of its choices")
        elif self.choices:
            found.append(f"{self.type} option {self.name!r} has choices")
        if self.type != "integer" and (self.min_value is not None or self.max_value is not None):
            found.append(f"{self.type} option {self.name!r} has bounds")
        if self.max_length is not None and self.type != "string":
            found.append(f"{self.type} option {self.name!r} has a max_length")
        if self.default is not None and not _fits(self, self.default):
            found.append(f"the default of {self.name!r} does not fit its type or bounds")
        return found

    def values(self) -> tuple[OptionValue, ...]:
        """The values of a choice option."""
        return tuple(value for value, _ in self.choices)


def _fits(option: PrintOption, value: OptionValue) -> bool:
    if option.type == "boolean":
        return isinstance(value, bool)
    if option.type == "string":
        return isinstance(value, str) and (
            option.max_length is None or len(value) <= option.max_length
        )
    if option.type == "integer":
        return (
            isinstance(value, int)
            and not isinstance(value, bool)
            and (option.min_value is None or value >= option.min_value)
            and (option.max_value is None or value <= option.max_value)
        )
    return True


COPIES = PrintOption(
    "copies",
    "integer",
    "Copies",
    "How many times to print the whole document.",
    default=1,
    min_value=1,
    max_value=MAX_COPIES,
)
THRESHOLD = PrintOption(
    "threshold",
    "integer",
    "Threshold",
    "Grey darker than this prints black; the driver's default if absent.",
    min_value=0,
    max_value=255,
)
DITHER = PrintOption(
    "dither",
    "boolean",
    "Dither",
    "Floyd-Steinberg dithering instead of a threshold; the driver's default if absent.",
)
ROTATION = PrintOption(
    "rotation",
    "choice",
    "Rotation",
    "Clockwise rotation in degrees; the driver's default if absent.",
    choices=((0, "0"), (90, "90"), (180, "180"), (270, "270")),
)
# How the agent draws a document into pages (`RenderOptions`); every label printer takes them.
RENDER_OPTIONS: tuple[PrintOption, ...] = (THRESHOLD, DITHER, ROTATION)
GENERIC_OPTIONS: tuple[PrintOption, ...] = (COPIES, *RENDER_OPTIONS)


def declaration_problems(options: Sequence[PrintOption]) -> list[str]:
    """What is wrong with a driver's own options: unsound ones, and names taken twice."""
    found: list[str] = []
    seen = {option.name for option in GENERIC_OPTIONS}
    for option in options:
        found += option.problems()
        if option.name in seen:
            found.append(f"option name {option.name!r} is taken")
        seen.add(option.name)
    return found
