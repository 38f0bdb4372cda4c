"""PDFs written by hand (vector text and shapes), for rendering tests and benchmarks."""

from __future__ import annotations

import zlib


def assemble_pdf(objects: list[bytes]) -> bytes:
    """A PDF file of the given numbered objects (1 is the catalog), with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


LABEL_62X29_PT = (175.748, 82.205)


def flate_rows(width: int, height: int, shade: int = 255) -> bytes:
    """Flate-compressed (zlib) rows of 8-bit grey pixels of one shade, built without the rows.

    Uniform rows compress about a thousandfold (a 40,000 x 30,000 image is about 1.2 MB). A slice
    of rows is deflated once after a full flush, which makes its output independent of what came
    before; that output is repeated, so a huge image costs neither its memory nor its time.
    """
    row = bytes([shade]) * width
    rows_per_slice = max(1, (1 << 20) // max(1, width))
    full_slices, rest = divmod(height, rows_per_slice)
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    slice_rows = row * rows_per_slice
    raw.compress(slice_rows)
    raw.flush(zlib.Z_FULL_FLUSH)  # the first slice: its output may differ from the rest
    block = raw.compress(slice_rows) + raw.flush(zlib.Z_FULL_FLUSH)
    tail = raw.compress(row * rest) + raw.flush(zlib.Z_FINISH)
    check = zlib.adler32(b"")
    for _ in range(full_slices):
        check = zlib.adler32(slice_rows, check)
    check = zlib.adler32(row * rest, check)
    # 0x78 0xDA: zlib header for deflate with a 32 kB window at the best compression level.
    return b"\x78\xda" + block * full_slices + tail + check.to_bytes(4, "big")


def image_pdf(
    image_width: int,
    image_height: int,
    *,
    pages: int = 1,
    page_pt: tuple[float, float] = LABEL_62X29_PT,
    via: str = "page",
    shade: int = 255,
    draws: int = 1,
) -> bytes:
    """Pages that each draw one grey image of one `shade` (white by default) over the whole page.

    `via` is where the image is drawn from: "page" (the page's content), "form" (a form XObject
    the page draws), "annotation" (a stamp annotation's appearance) or "inline" (an inline image
    in the page's content, uncompressed, so keep it small). The page draws it `draws` times.
    """
    width, height = page_pt
    draw = b"q %.3f 0 0 %.3f 0 0 cm /Im1 Do Q" % (width, height)
    pixels = flate_rows(image_width, image_height, shade)
    image = b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray " % (
        image_width,
        image_height,
    ) + b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream" % (
        len(pixels),
        pixels,
    )
    form = b"<< /Type /XObject /Subtype /Form /BBox [0 0 %.3f %.3f] " % (width, height) + (
        b"/Resources << /XObject << /Im1 5 0 R >> >> /Length %d >>\nstream\n%s\nendstream"
        % (len(draw), draw)
    )
    annots = b""
    if via == "page":
        content = b" ".join([draw] * draws)
    elif via == "form":
        content = b"/Fm1 Do"
    elif via == "annotation":
        content = b""
        annots = (
            b"/Annots [<< /Type /Annot /Subtype /Stamp /Rect [0 0 %.3f %.3f] "
            % (
                width,
                height,
            )
            + b"/AP << /N 6 0 R >> >>] "
        )
    elif via == "inline":
        content = b"q %.3f 0 0 %.3f 0 0 cm BI /W %d /H %d /BPC 8 /CS /G ID\n%s\nEI Q" % (
            width,
            height,
            image_width,
            image_height,
            bytes([shade]) * (image_width * image_height),
        )
    else:
        raise ValueError(f"unknown via {via!r}")
    kids = b" ".join(b"%d 0 R" % (8 + page) for page in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /XObject << /Im1 5 0 R /Fm1 6 0 R >> >>",
        image,
        form,
    ]
    objects.append(b"null")  # 7: unused, keeps page numbers simple
    objects.extend(
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.3f %.3f] /Contents 3 0 R "
        b"/Resources 4 0 R %s>>" % (width, height, annots)
        for _ in range(pages)
    )
    return assemble_pdf(objects)


def text_labels_pdf(pages: int, page_pt: tuple[float, float] = LABEL_62X29_PT) -> bytes:
    """`pages` labels of vector text and bars (Helvetica), each page numbered in its text."""
    width, height = page_pt
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",  # the page tree, once the pages are numbered
        b"<< /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >>",
    ]
    kids = []
    for number in range(1, pages + 1):
        bars = b" ".join(b"%d 8 %d 24 re" % (10 + 4 * i, 1 + (number + i) % 3) for i in range(30))
        content = b"BT /F1 11 Tf 10 60 Td (Part %d of %d) Tj ET\n%s f" % (number, pages, bars)
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.3f %.3f] /Contents %d 0 R "
            b"/Resources 3 0 R >>" % (width, height, len(objects))
        )
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), pages)
    return assemble_pdf(objects)


def drawing_bomb_pdf(rectangles: int, pages: int = 1) -> bytes:
    """Pages sharing one flate-compressed content stream that fills `rectangles` tiny rectangles.

    Each operator is 13 bytes and compresses to almost nothing, while pdfium holds every parsed
    drawing object (some 400 bytes): a 23 kB file of 900,000 rectangles takes about 400 MB.
    """
    content = zlib.compress(b"0 0 1 1 re f\n" * rectangles, 9)
    kids = b" ".join(b"%d 0 R" % (4 + page) for page in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(content), content),
    ]
    objects.extend(
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.3f %.3f] /Contents 3 0 R >>"
        % LABEL_62X29_PT
        for _ in range(pages)
    )
    return assemble_pdf(objects)
