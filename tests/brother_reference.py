"""A test-side reading of QL raster jobs, written from Brother's Raster Command Reference
(QL-800/810W/820NWB and QL-1100/1110NWB/1115NWB editions).

It shares no code with `drivers/brother_ql/` (neither the encoder nor the simulator's decoder,
nor the family's media table), so a misreading of the reference in one of them shows here. From
the reference:

- NUL is "invalidate" and is skipped; `ESC @` initialises; `ESC i S` asks for status (no data);
  `ESC i a n`, `ESC i ! n`, `ESC i M n`, `ESC i A n`, `ESC i K n` take one byte, `ESC i d` two,
  `ESC i z` ten (n3 is the media width in mm, n2 the media type: 0Ah continuous, 0Bh die-cut);
- `M 02h` selects TIFF compression: every later `g`/`w` payload is PackBits (TIFF 6.0,
  section 9): a header byte n of 0..127 copies the next n + 1 bytes, -127..-1 repeats the next
  byte 1 - n times, -128 does nothing;
- `g 00h n d1..dn` is one raster line; `w 01h n ...` and `w 02h n ...` the first (black) and
  second (red) colour of a two-colour line; `Z` a line of no dots;
- a line's bits drive the head's pins in order, most significant bit first; pins left of the print
  area are the "offset" of the page size table (12 for 62 mm tape, 6 for 29 mm) and the image is
  sent mirrored, so pin `offset` prints the page's right-most column;
- `FF` prints the page, `Ctrl-Z` prints the last page.
"""

from __future__ import annotations

from PIL import Image

# Print area pins and offset pins from the reference's page size table, by media width in mm.
_PRINT_AREA = {12: (106, 29), 29: (306, 6), 38: (413, 12), 50: (554, 12), 62: (696, 12)}
_ONE_BYTE = b"aMAK!"


def labels(stream: bytes) -> list[Image.Image]:
    """Every page printed by `stream`, as a mode "L" image (0 ink of any colour, 255 paper)."""
    pages: list[Image.Image] = []
    compressed = False
    width_mm = 0
    colours: dict[int, list[bytes]] = {1: [], 2: []}
    i = 0
    while i < len(stream):
        byte = stream[i]
        if byte == 0x00:
            i += 1
        elif byte == 0x1B and stream[i + 1 : i + 2] == b"@":
            i += 2
        elif byte == 0x1B and stream[i + 1 : i + 2] == b"i":
            letter = stream[i + 2 : i + 3]
            if letter == b"S":
                i += 3
            elif letter == b"z":
                width_mm = stream[i + 5]
                i += 13
            elif letter == b"d":
                i += 5
            elif letter and letter in _ONE_BYTE:
                i += 4
            else:
                raise ValueError(f"unknown command ESC i {letter!r} at {i}")
        elif byte == ord("M"):
            compressed = stream[i + 1] == 0x02
            i += 2
        elif byte in (ord("g"), ord("w")):
            colour = 1 if byte == ord("g") else stream[i + 1]
            size = stream[i + 2]
            payload = stream[i + 3 : i + 3 + size]
            colours[colour].append(_unpack(payload) if compressed else payload)
            i += 3 + size
        elif byte == ord("Z"):
            colours[1].append(b"")
            i += 1
        elif byte in (0x0C, 0x1A):
            pages.append(_page(colours, width_mm))
            colours = {1: [], 2: []}
            i += 1
        else:
            raise ValueError(f"unexpected byte {byte:#04x} at {i}")
    return pages


def _unpack(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        n = data[i] - 256 if data[i] > 127 else data[i]
        if n >= 0:
            out += data[i + 1 : i + 2 + n]
            i += 2 + n
        elif n != -128:
            out += data[i + 1 : i + 2] * (1 - n)
            i += 2
        else:
            i += 1
    return bytes(out)


def _page(colours: dict[int, list[bytes]], width_mm: int) -> Image.Image:
    area, offset = _PRINT_AREA[width_mm]
    black, red = colours[1], colours[2]
    pixels = bytearray()
    for y, line in enumerate(black):
        other = red[y] if y < len(red) else b""
        for x in range(area):
            pin = offset + area - 1 - x
            pixels.append(0 if _pin(line, pin) or _pin(other, pin) else 255)
    return Image.frombytes("L", (area, len(black)), bytes(pixels))


def _pin(line: bytes, pin: int) -> bool:
    index = pin // 8
    return index < len(line) and bool(line[index] & (0x80 >> (pin % 8)))
