"""Time `render_document` on a 62 x 29 mm label at 300 dpi; prints ms per label (p50/p99).

Each case runs in the render worker (the daemon's way: a child process with capped memory) and in
this process, so the cost of the worker's round trip shows.

Run from the repository root: `.venv/bin/python -m bench.render [N]`.
"""

from __future__ import annotations

import io
import random
import statistics
import sys
import time

from PIL import Image

from agent.render import DEFAULT_LIMITS, RenderLimits, render_document
from drivers.base import PageFormat, RenderOptions
from tests.handmade_pdf import assemble_pdf

WIDTH_MM, HEIGHT_MM = 62, 29
DPI = 300
PAGE_FORMAT = PageFormat(dpi=DPI, width_dots=732)
POINTS_PER_MM = 72 / 25.4


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    cases = {
        "vector PDF (text, QR, barcode)": ("application/pdf", _vector_pdf()),
        "image PDF (732 x 342)": ("application/pdf", _image_pdf()),
        "PNG (732 x 342)": ("image/png", _png()),
    }
    where = {"worker": DEFAULT_LIMITS, "in process": RenderLimits(max_memory_bytes=None)}
    for name, (content_type, data) in cases.items():
        for options in (RenderOptions(), RenderOptions(dither=True)):
            for place, limits in where.items():
                times = _time(data, content_type, options, limits, runs)
                mode = "dither" if options.dither else "threshold"
                print(
                    f"{name:32} {mode:9} {place:10} p50 {statistics.median(times):6.2f} ms  "
                    f"p99 {_p99(times):6.2f} ms  ({runs} runs)"
                )


def _time(
    data: bytes, content_type: str, options: RenderOptions, limits: RenderLimits, runs: int
) -> list[float]:
    render_document(data, content_type, PAGE_FORMAT, options, limits=limits)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        render_document(data, content_type, PAGE_FORMAT, options, limits=limits)
        times.append((time.perf_counter() - start) * 1000)
    return times


def _p99(times: list[float]) -> float:
    return sorted(times)[min(len(times) - 1, int(len(times) * 0.99))]


def _vector_pdf() -> bytes:
    """A typical InvenTree label: two lines of Helvetica, a 25 x 25 QR-like grid and a barcode."""
    modules = random.Random(1)
    ops = ["BT /F1 9 Tf 70 62 Td (Part: M3x8 button screw) Tj ET"]
    ops.append("BT /F1 7 Tf 70 50 Td (IPN 0042-17  Location: Shelf B3) Tj ET")
    for row in range(25):
        for col in range(25):
            if modules.random() < 0.5:
                ops.append(f"{6 + col * 2.2:.2f} {8 + row * 2.2:.2f} 2.2 2.2 re")
    x = 70.0
    while x < 165:
        width = modules.choice((0.48, 0.96, 1.44))
        ops.append(f"{x:.2f} 8 {width:.2f} 30 re")
        x += width + modules.choice((0.48, 0.96))
    ops.append("f")
    content = "\n".join(ops).encode()
    width_pt, height_pt = WIDTH_MM * POINTS_PER_MM, HEIGHT_MM * POINTS_PER_MM
    return assemble_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.3f %.3f] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>" % (width_pt, height_pt),
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        ]
    )


def _label_bitmap() -> Image.Image:
    return Image.effect_noise((732, 342), 120).point(lambda v: 0 if v < 128 else 255)


def _image_pdf() -> bytes:
    buffer = io.BytesIO()
    _label_bitmap().convert("P").save(buffer, "PDF", resolution=DPI)
    return buffer.getvalue()


def _png() -> bytes:
    buffer = io.BytesIO()
    _label_bitmap().save(buffer, "PNG", dpi=(DPI, DPI))
    return buffer.getvalue()


if __name__ == "__main__":
    main()
