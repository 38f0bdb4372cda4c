"""The media a printer reports loaded, and the error for a job that does not fit it.

A driver that reads the media from the printer's status puts it in its `StatusReport` (or calls
`machine.set_media`); the agent keeps the last one on the machine (`Machine.media`), where
`page_format` can read it: to lay pages out for the labels that are loaded, or to refuse a job
laid out for other labels with `MediaMismatch`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from drivers.base import PrinterUnavailable

# Continuous tape or paper; labels separated by gaps (die-cut); labels marked by a black line.
MediaKind = Literal["continuous", "die-cut", "black-mark", "unknown"]


@dataclass(frozen=True, slots=True)
class Media:
    """What a printer says is loaded; a size it does not report is None.

    Sizes come as the printer gives them, in millimetres or in dots (or both); a continuous
    media has no length. `name` is the printer's or the vendor's name for it, if any ("62red").
    """

    loaded: bool = True
    kind: MediaKind = "unknown"
    width_mm: float | None = None
    length_mm: float | None = None
    width_dots: int | None = None
    length_dots: int | None = None
    name: str = ""

    def describe(self) -> str:
        """In words, for status texts and errors: "62 x 29 mm die-cut labels", "no media"."""
        if not self.loaded:
            return "no media"
        width = _size(self.width_mm, self.width_dots)
        length = _size(self.length_mm, self.length_dots)
        if self.width_mm is not None and self.length_mm is not None:
            size = f"{self.width_mm:g} x {self.length_mm:g} mm"
        elif width and length:
            size = f"{width} x {length}"
        elif width:
            size = f"{width} wide"
        elif length:
            size = f"{length} long"
        else:
            size = ""
        kind = {
            "continuous": "continuous media",
            "die-cut": "die-cut labels",
            "black-mark": "black-mark media",
            "unknown": "media",
        }[self.kind]
        words = " ".join(part for part in (size, kind) if part)
        return f"{words} ({self.name})" if self.name else words


def _size(mm: float | None, dots: int | None) -> str:
    if mm is not None:
        return f"{mm:g} mm"
    if dots is not None:
        return f"{dots} dots"
    return ""


class MediaMismatch(PrinterUnavailable):
    """The loaded media is not what the machine is set up for: the job waits for the right one.

    It waits rather than fails: loading the right labels (or changing the setting) is the fix,
    and then the job prints without being sent again. Raised by `page_format` (which reads
    `machine.media`) or by `print` after reading the printer's status; the message is shown as
    the machine's status text and in the job's errors, so it must say what is loaded and what
    was expected.
    """

    def __init__(self, loaded: Media, expected: str) -> None:
        super().__init__(
            f"The printer has {loaded.describe()} loaded; this machine is set up for {expected}"
        )
        self.loaded = loaded
        self.expected = expected
