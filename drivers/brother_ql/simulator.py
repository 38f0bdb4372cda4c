"""A simulated Brother QL printer: raster pages to bitmaps, ESC i S, and the frames it pushes.

It sends the frames a QL sends by itself while it prints, as the reference's flow charts show.

Model (choices a real printer leaves open):

- A page is printed at FF or Ctrl-Z from the raster lines received since the last one; its image
  is the loaded media's print area cut from the head lines and mirrored back (at 300 x 600 dpi,
  ESC i K bit 6, each dot is drawn two columns wide: the label at 600 dpi). Two-colour pages
  (`w` lines) print black where either colour has ink; their planes are kept in `planes`.
- Printing a page sends three frames: phase change to printing, printing completed, phase change
  to receiving. A page the printer cannot print sends one error frame and is dropped, as the
  reference's error flow shows: "no-media", "end-of-media", "cover-open", "cutter-jam", and an
  ESC i z whose media (with its valid flags) is not the media loaded (error 2 bit 0).
- "overheat": each page is preceded by the cooling-started and cooling-finished notifications,
  and ESC i S reports cooling started. "wrong-media" loads a 29x90 die-cut roll instead of the
  one the simulator was made with. "offline": nothing is answered and nothing printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import structlog
from PIL import Image, ImageChops

from drivers.brother_ql import FAMILY
from drivers.brother_ql.protocol import (
    HIGH_RESOLUTION,
    MEDIA_CONTINUOUS,
    MEDIA_DIE_CUT,
    VALID_KIND,
    VALID_LENGTH,
    VALID_WIDTH,
    Error1,
    Error2,
    Notification,
    Phase,
    StatusType,
    encode_status,
    unpackbits,
)
from drivers.brother_ql.tables import DEFAULT_LABEL, DEFAULT_MODEL, LABELS, MODELS, Label
from drivers.sim.base import COMMON_FAULTS, LabelHook, Simulator

log = structlog.get_logger(__name__)

WRONG_MEDIA = "29x90"
# ESC i <letter> commands and how many parameter bytes follow the letter.
_ESC_I_PARAMS = {ord("S"): 0, ord("a"): 1, ord("!"): 1, ord("z"): 10, ord("M"): 1, ord("A"): 1,
                 ord("K"): 1, ord("d"): 2}  # fmt: skip
# Raster lines one page may hold before the simulator drops it (a 1 m label at 600 dpi).
MAX_LINES = 24000


@dataclass
class _Page:
    """The page being received."""

    info: bytes = b""
    various_mode: int = 0
    expanded_mode: int = 0
    compressed: bool = False
    black: list[bytes] = field(default_factory=list)
    red: list[bytes] = field(default_factory=list)
    two_colour: bool = False


class BrotherQlSimulator(Simulator):
    """A Brother QL printer (QL-820NWB with 62 mm continuous tape unless told otherwise)."""

    LANGUAGE: ClassVar[str] = "brother-ql"
    FAULTS: ClassVar[frozenset[str]] = COMMON_FAULTS | frozenset(FAMILY.faults)

    def __init__(
        self,
        on_label: LabelHook | None = None,
        *,
        model: str = DEFAULT_MODEL,
        media: str = DEFAULT_LABEL,
    ) -> None:
        super().__init__(on_label)
        self.model = MODELS[model]
        self.media = LABELS[media]
        # The colour planes of each printed label (one, or black and red), as the head printed them.
        self.planes: list[tuple[Image.Image, ...]] = []
        self.unknown_bytes = 0
        self.various_mode = 0

    @property
    def loaded(self) -> Label | None:
        """The media in the printer now (None: no roll)."""
        if self.has_fault("no-media"):
            return None
        return LABELS[WRONG_MEDIA] if self.has_fault("wrong-media") else self.media

    def open_channel(self) -> _QlChannel:
        """Start a new byte stream (one per connection)."""
        return _QlChannel(self)

    def frame(self, status_type: int, phase: int = Phase.RECEIVING, **extra: int) -> bytes:
        """A status frame for the printer's state now."""
        errors1, errors2 = self.errors()
        media = self.loaded
        notification = extra.pop("notification", Notification.NONE)
        if status_type == StatusType.REPLY and self.has_fault("overheat"):
            notification = Notification.COOLING_STARTED
        return encode_status(
            model_code=self.model.status_code,
            errors1=errors1 | extra.pop("errors1", 0),
            errors2=errors2 | extra.pop("errors2", 0),
            media_width_mm=media.width_mm if media else 0,
            media_type=_media_type(media),
            media_length_mm=media.printer_length_mm if media else 0,
            mode=self.various_mode,
            status_type=status_type,
            phase=phase,
            notification=notification,
        )

    def errors(self) -> tuple[int, int]:
        """Error information 1 and 2 for the faults switched on."""
        errors1 = Error1(0)
        errors2 = Error2(0)
        if self.has_fault("no-media"):
            errors1 |= Error1.NO_MEDIA
        if self.has_fault("end-of-media"):
            errors1 |= Error1.END_OF_MEDIA
        if self.has_fault("cutter-jam"):
            errors1 |= Error1.CUTTER_JAM
        if self.has_fault("cover-open"):
            errors2 |= Error2.COVER_OPEN
        return int(errors1), int(errors2)

    def print_page(self, page: _Page) -> bytes:
        """FF or Ctrl-Z: print the page (or refuse it) and return the frames sent meanwhile."""
        errors1, errors2 = self.errors()
        if not errors1 and not errors2 and not self._info_matches(page.info):
            errors2 = int(Error2.REPLACE_MEDIA)
        if errors1 or errors2:
            log.info("sim_page_refused", faults=sorted(self.faults))
            return self.frame(StatusType.ERROR, errors2=errors2)
        media = self.loaded
        if media is None or not page.black:
            log.info("sim_empty_page_dropped")
            return b""
        frames = bytearray(self.frame(StatusType.PHASE_CHANGE, Phase.PRINTING))
        if self.has_fault("overheat"):
            for note in (Notification.COOLING_STARTED, Notification.COOLING_FINISHED):
                frames += self.frame(StatusType.NOTIFICATION, Phase.PRINTING, notification=note)
        try:
            planes = tuple(self._plane(lines, media) for lines in _colour_lines(page))
        except ValueError as err:
            log.info("sim_bad_raster_dropped", reason=str(err))
            return self.frame(StatusType.ERROR, errors2=int(Error2.COMMUNICATION))
        if page.expanded_mode & HIGH_RESOLUTION:
            # 600 dpi lines: shown as square 600 dpi dots, each head dot two columns wide.
            planes = tuple(
                p.resize((p.width * 2, p.height), Image.Resampling.NEAREST) for p in planes
            )
        image = planes[0]
        if len(planes) == 2:
            image = ImageChops.logical_and(planes[0], planes[1])
        self.planes.append(planes)
        auto_cut = bool(page.various_mode & 0x40)
        self._printed(image, cut="full" if auto_cut else "none")
        frames += self.frame(StatusType.PRINTING_COMPLETED, Phase.PRINTING)
        frames += self.frame(StatusType.PHASE_CHANGE, Phase.RECEIVING)
        return bytes(frames)

    def _info_matches(self, info: bytes) -> bool:
        """False when ESC i z names media (with its valid flags) other than the loaded one."""
        media = self.loaded
        if len(info) != 10 or media is None:
            return True
        flags, kind, width, length = info[0], info[1], info[2], info[3]
        if flags & VALID_KIND and kind != _media_type(media):
            return False
        if flags & VALID_WIDTH and width != media.width_mm:
            return False
        return not (
            flags & VALID_LENGTH and not media.continuous and length != media.printer_length_mm
        )

    def _plane(self, lines: list[bytes], media: Label) -> Image.Image:
        """Head lines to the print area as the label shows it (mode "1", black = 0)."""
        stride = self.model.line_bytes
        for line in lines:
            if len(line) != stride:
                raise ValueError(f"a raster line of {len(line)} bytes; the head takes {stride}")
        ink = Image.frombytes("1", (self.model.head_dots, len(lines)), b"".join(lines))
        area = ink.crop((media.offset, 0, media.offset + media.printable_width, len(lines)))
        return ImageChops.invert(area).transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _media_type(media: Label | None) -> int:
    if media is None:
        return 0
    return MEDIA_CONTINUOUS if media.continuous else MEDIA_DIE_CUT


def _colour_lines(page: _Page) -> list[list[bytes]]:
    return [page.black, page.red] if page.two_colour else [page.black]


class _QlChannel:
    """One stream's parser; the printer's state is the simulator's."""

    def __init__(self, sim: BrotherQlSimulator) -> None:
        self._sim = sim
        self._buf = bytearray()
        self._page = _Page()

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        replies = bytearray()
        pos = 0
        buf = self._buf
        while pos < len(buf):
            end = self._command(pos, replies)
            if end is None:
                break
            pos = end
        del self._buf[:pos]
        return b"" if self._sim.has_fault("offline") else bytes(replies)

    def close(self) -> None:
        if self._page.black or self._page.red:
            log.info("sim_partial_page_dropped", lines=len(self._page.black))
        self._page = _Page()
        self._buf.clear()

    def _command(self, pos: int, replies: bytearray) -> int | None:
        """Run the command at `pos`; its end, or None until all of it arrived."""
        buf, sim, page = self._buf, self._sim, self._page
        byte = buf[pos]
        if byte == 0x00:
            return pos + 1
        if byte in (0x0C, 0x1A):
            if not sim.has_fault("offline"):
                replies += sim.print_page(page)
            self._page = _Page(
                info=b"",
                various_mode=page.various_mode,
                expanded_mode=page.expanded_mode,
                compressed=page.compressed,
            )
            return pos + 1
        if byte == 0x1B:
            return self._escape(pos, replies)
        if byte == ord("M"):
            if len(buf) < pos + 2:
                return None
            page.compressed = buf[pos + 1] == 0x02
            return pos + 2
        if byte == ord("Z"):
            self._add_line(page.black, bytes(sim.model.line_bytes))
            return pos + 1
        if byte in (ord("g"), ord("w")):
            return self._raster(pos)
        sim.unknown_bytes += 1
        return pos + 1

    def _escape(self, pos: int, replies: bytearray) -> int | None:
        buf, sim, page = self._buf, self._sim, self._page
        if len(buf) < pos + 2:
            return None
        if buf[pos + 1] == ord("@"):
            self._page = _Page()
            return pos + 2
        if buf[pos + 1] != ord("i"):
            sim.unknown_bytes += 1
            return pos + 1
        if len(buf) < pos + 3:
            return None
        letter = buf[pos + 2]
        size = _ESC_I_PARAMS.get(letter)
        if size is None:
            sim.unknown_bytes += 3
            return pos + 3
        end = pos + 3 + size
        if len(buf) < end:
            return None
        params = bytes(buf[pos + 3 : end])
        if letter == ord("S"):
            replies += sim.frame(StatusType.REPLY)
        elif letter == ord("z"):
            page.info = params
        elif letter == ord("M"):
            page.various_mode = sim.various_mode = params[0]
        elif letter == ord("K"):
            page.expanded_mode = params[0]
        return end

    def _raster(self, pos: int) -> int | None:
        buf, page = self._buf, self._page
        if len(buf) < pos + 3:
            return None
        count = buf[pos + 2]
        end = pos + 3 + count
        if len(buf) < end:
            return None
        payload = bytes(buf[pos + 3 : end])
        try:
            line = unpackbits(payload) if page.compressed else payload
        except ValueError as err:
            log.info("sim_bad_packbits", reason=str(err))
            line = b""
        if buf[pos] == ord("g"):
            self._add_line(page.black, line)
        else:
            page.two_colour = True
            self._add_line(page.black if buf[pos + 1] == 0x01 else page.red, line)
        return end

    def _add_line(self, lines: list[bytes], line: bytes) -> None:
        if len(lines) < MAX_LINES:
            lines.append(line)
