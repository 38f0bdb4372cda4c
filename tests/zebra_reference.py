"""A test-side reading of ZPL label formats, written from Zebra's ZPL II Programming Guide.

It shares no code with `drivers/zpl/protocol.py` (neither the encoder nor the simulator's decoder),
so a misreading of the guide in one of them shows up as a difference here. It reads only what the
agent sends for a rendered page: `^PW` (print width), `^LL` (label length), `^FOx,y` field origins,
and `^GFA` graphic fields in ASCII hex with the guide's compression scheme:

- `G`..`Y` repeat the next hex digit 1..19 times, `g`..`z` 20..400 times (steps of 20); several
  count letters add up;
- `,` fills the rest of the row with `0`, `!` with `F`;
- `:` repeats the previous row.
"""

from __future__ import annotations

import re

from PIL import Image

_FORMAT = re.compile(rb"\^XA(.*?)\^XZ", re.DOTALL)
_COMMAND = re.compile(rb"\^([A-Z]{2})([^^~]*)")


def labels(stream: bytes) -> list[Image.Image]:
    """Every `^XA...^XZ` format in `stream` drawn as a mode "L" label (0 ink, 255 paper)."""
    return [_draw(body) for body in _FORMAT.findall(stream)]


def _draw(body: bytes) -> Image.Image:
    width = length = 0
    origin = (0, 0)
    fields: list[tuple[tuple[int, int], Image.Image]] = []
    for name, params in _COMMAND.findall(body):
        if name == b"PW":
            width = int(params)
        elif name == b"LL":
            length = int(params)
        elif name == b"FO":
            x, y = params.split(b",")[:2]
            origin = (int(x), int(y))
        elif name == b"GF":
            fields.append((origin, _graphic(params)))
    label = Image.new("L", (width, length), 255)
    for position, graphic in fields:
        label.paste(graphic, position)
    return label


def _graphic(params: bytes) -> Image.Image:
    kind, total, _field_total, row_bytes, data = params.split(b",", 4)
    assert kind == b"A", "only ASCII hex graphics are read here"
    rows = int(total) // int(row_bytes)
    hex_rows = _expand(data.decode("ascii").strip(), 2 * int(row_bytes))
    assert len(hex_rows) == rows, (len(hex_rows), rows)
    image = Image.new("L", (8 * int(row_bytes), rows), 255)
    pixels = image.load()
    assert pixels is not None
    for y, row in enumerate(hex_rows):
        for byte_index in range(int(row_bytes)):
            value = int(row[2 * byte_index : 2 * byte_index + 2], 16)
            for bit in range(8):
                if value & (0x80 >> bit):  # a set bit is a dot burnt black
                    pixels[8 * byte_index + bit, y] = 0
    return image


def _expand(data: str, digits_per_row: int) -> list[str]:
    rows: list[str] = []
    row = ""
    count = 0
    for char in data:
        if "G" <= char <= "Y":
            count += ord(char) - ord("G") + 1
        elif "g" <= char <= "z":
            count += 20 * (ord(char) - ord("g") + 1)
        elif char in "0123456789ABCDEF":
            row += char * max(count, 1)
            count = 0
        elif char in ",!":
            row += ("0" if char == "," else "F") * (digits_per_row - len(row))
        elif char == ":":
            assert rows, "':' repeats a row, so it cannot come first"
            assert not row, "':' stands for a whole row"
            row = rows[-1]
        if len(row) == digits_per_row:
            rows.append(row)
            row = ""
    assert not row, "the data ends inside a row"
    return rows
