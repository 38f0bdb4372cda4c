"""What a QL status frame means: conditions for the machine, the loaded media, the model."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from drivers.brother_ql.protocol import Error1, Error2, Notification, StatusFrame, StatusType
from drivers.brother_ql.tables import Label, Model, label_for, model_for_status_code
from drivers.kit import (
    Condition,
    LabelPrinterStatus,
    MachineProperty,
    Media,
    MediaMismatch,
    StatusReport,
)

S = LabelPrinterStatus
LIVE = "Printer status"

ERROR1_CONDITIONS: Mapping[Error1, Condition] = MappingProxyType(
    {
        Error1.NO_MEDIA: Condition(S.NO_MEDIA, "No media: load a DK roll"),
        Error1.END_OF_MEDIA: Condition(S.NO_MEDIA, "End of media: the roll is used up"),
        Error1.CUTTER_JAM: Condition(S.PAPER_JAM, "Cutter jam: open the cover and clear it"),
        Error1.WEAK_BATTERIES: Condition(S.WARNING, "Weak batteries", blocks_printing=False),
        Error1.PRINTER_IN_USE: Condition(S.WARNING, "Printer in use by another job"),
        Error1.TURNED_OFF: Condition(S.ERROR, "Printer turned off"),
        Error1.HIGH_VOLTAGE_ADAPTER: Condition(S.ERROR, "Wrong (high-voltage) power adapter"),
        Error1.FAN_MOTOR: Condition(S.ERROR, "Fan motor error"),
    }
)
ERROR2_CONDITIONS: Mapping[Error2, Condition] = MappingProxyType(
    {
        Error2.REPLACE_MEDIA: Condition(
            S.NO_MEDIA, "Replace media: the loaded roll is not the job's"
        ),
        Error2.EXPANSION_BUFFER_FULL: Condition(S.ERROR, "Expansion buffer full"),
        Error2.COMMUNICATION: Condition(S.ERROR, "Communication error"),
        Error2.COMMUNICATION_BUFFER_FULL: Condition(S.ERROR, "Communication buffer full"),
        Error2.COVER_OPEN: Condition(S.ERROR, "Cover open"),
        Error2.FEED: Condition(S.NO_MEDIA, "Media cannot be fed"),
        Error2.SYSTEM: Condition(S.ERROR, "System error: switch the printer off and on"),
    }
)
COOLING = Condition(S.WARNING, "Cooling down: printing resumes by itself", blocks_printing=False)
COVER_OPENED = Condition(S.ERROR, "Cover open")


def frame_conditions(frame: StatusFrame) -> tuple[Condition, ...]:
    """The conditions the frame's error bits (and a cooling or cover-open notification) report."""
    found = [c for bit, c in ERROR1_CONDITIONS.items() if bit in frame.errors1]
    found += [c for bit, c in ERROR2_CONDITIONS.items() if bit in frame.errors2]
    if frame.status_type == StatusType.TURNED_OFF and Error1.TURNED_OFF not in frame.errors1:
        found.append(ERROR1_CONDITIONS[Error1.TURNED_OFF])
    if frame.notification == Notification.COOLING_STARTED:
        found.append(COOLING)
    if frame.notification == Notification.COVER_OPEN and Error2.COVER_OPEN not in frame.errors2:
        found.append(COVER_OPENED)
    return tuple(found)


def loaded_media(frame: StatusFrame) -> Media:
    """The media the frame says is loaded (sizes in mm, and in dots when the table knows it)."""
    kind = frame.media_kind
    if kind is None or frame.media_width_mm == 0:
        return Media(loaded=False)
    label = label_for(
        "continuous" if kind == "continuous" else "die-cut",
        frame.media_width_mm,
        frame.media_length_mm,
    )
    length = frame.media_length_mm if kind == "die-cut" else None
    return Media(
        loaded=True,
        kind="continuous" if kind == "continuous" else "die-cut",
        width_mm=frame.media_width_mm,
        length_mm=length,
        width_dots=label.printable_width if label else None,
        length_dots=(label.printable_length or None) if label else None,
        name=label.name if label else "",
    )


def media_matches(frame: StatusFrame, expected: Label) -> bool:
    """True when the loaded media is the one the LABEL setting names (red tape reads as 62)."""
    if frame.media_kind != expected.kind or frame.media_width_mm != expected.width_mm:
        return False
    return expected.continuous or abs(frame.media_length_mm - expected.length_mm) <= 1


def expected_media(expected: Label) -> str:
    """What the machine is set up for, in the words of `MediaMismatch`."""
    return f"{expected.describe()} (the LABEL setting {expected.name!r})"


def status_report(frame: StatusFrame, expected: Label | None, model: Model) -> StatusReport:
    """The report for one frame, checked against the LABEL (unless None) and MODEL settings."""
    conditions = list(frame_conditions(frame))
    media = loaded_media(frame)
    if expected is not None and media.loaded and not media_matches(frame, expected):
        mismatch = MediaMismatch(media, expected_media(expected))
        conditions.append(Condition(S.NO_MEDIA, str(mismatch)))
    # The QL-500 and QL-550 share a code: the MODEL setting names the one in front of us.
    same = model.status_code == frame.model_code
    reported = model if same else model_for_status_code(frame.model_code)
    if reported is not None and reported.name != model.name and reported.wide != model.wide:
        conditions.append(
            Condition(
                S.ERROR,
                f"The printer is a {reported.name}; set MODEL to it (MODEL is {model.name})",
            )
        )
    shown_model = reported.name if reported is not None else f"code 0x{frame.model_code:02x}"
    properties = (
        MachineProperty("Model", shown_model, group="Printer"),
        MachineProperty("Media loaded", media.describe(), group=LIVE),
    )
    return StatusReport(tuple(conditions), properties, media)
