"""A test-side reading of TSPL jobs, written from TSC's TSPL/TSPL2 programming manual.

It shares no code with `drivers/tspl/` (neither the encoder nor the simulator), so a misreading
of the manual in one of them shows up as a difference here. It reads what the agent sends for
rendered pages, as the manual describes the commands:

- `SIZE m mm,n mm` sets the label size; at 203 dpi 1 mm is 8 dots, at 300 dpi 12 dots;
- `CLS` clears the image buffer;
- `BITMAP X,Y,width,height,mode,data`: width in bytes, height in dots, then width x height
  bytes of raw data, where a 0 bit is a printed (black) dot and a 1 bit is not printed; mode 0
  is OVERWRITE;
- `PRINT m[,n]` prints the image buffer m label sets (n copies of each);
- `ESC ! x` and `~! x` are three-byte immediate commands, not part of the label.

Other lines (GAP, BLINE, DIRECTION, DENSITY, SPEED) do not change what is printed.
"""

from __future__ import annotations

from PIL import Image

DOTS_PER_MM = {203: 8, 300: 12, 600: 24}
_BIT_TO_GRAY = bytes.maketrans(b"01", b"\x00\xff")


def labels(stream: bytes, dpi: int = 203) -> list[Image.Image]:
    """Every label the stream prints, as mode "L" images (0 ink, 255 paper)."""
    dots_per_mm = DOTS_PER_MM[dpi]
    printed: list[Image.Image] = []
    size = (0, 0)
    page: Image.Image | None = None
    at = 0
    while at < len(stream):
        if stream[at] == 0x1B or stream[at : at + 2] == b"~!":
            at += 3
            continue
        if stream[at : at + 6] == b"BITMAP":
            fields = stream[at + 6 :].split(b",", 5)
            x, y, width_bytes, height, mode = (int(f) for f in fields[:5])
            assert mode == 0, "the agent overwrites"
            start = at + 6 + sum(len(f) + 1 for f in fields[:5])
            data = stream[start : start + width_bytes * height]
            assert page is not None, "BITMAP before CLS"
            _draw(page, x, y, width_bytes, height, data)
            at = start + width_bytes * height
            continue
        end = stream.find(b"\n", at)
        end = len(stream) if end < 0 else end
        words = stream[at:end].strip().split(b" ", 1)
        at = end + 1
        if words[0] == b"SIZE":
            width_mm, height_mm = (
                float(v.strip().removesuffix(b"mm")) for v in words[1].split(b",")
            )
            size = (round(width_mm * dots_per_mm), round(height_mm * dots_per_mm))
        elif words[0] == b"CLS":
            page = Image.new("L", size, 255)
        elif words[0] == b"PRINT":
            counts = [int(v) for v in words[1].split(b",")]
            assert page is not None, "PRINT before CLS"
            total = counts[0] * (counts[1] if len(counts) > 1 else 1)
            printed.extend(page.copy() for _ in range(total))
    return printed


def _draw(page: Image.Image, x: int, y: int, width_bytes: int, height: int, data: bytes) -> None:
    dots = width_bytes * 8
    # Every bit as a character, the first byte's top bit first; a "0" bit prints (ink 0).
    bits = format(int.from_bytes(data, "big"), f"0{dots * height}b") if data else ""
    gray = bits.encode("ascii").translate(_BIT_TO_GRAY)
    page.paste(Image.frombytes("L", (dots, height), gray), (x, y))
