from __future__ import annotations

import asyncio
import contextlib
import io
import random
import re
import time
from collections.abc import Callable

import pytest
import serial
from PIL import Image, ImageChops, ImageDraw

from drivers.escpos.protocol import STATUS_QUERIES, decode_status, encode_job
from drivers.sim import EscposSimulator, ReceivedLabel, run_simulator, serve_pty, serve_tcp

# Generous bound for a reply over loopback or a pty; a healthy run answers in microseconds.
from tests.conftest import closed_by_peer

REPLY_TIMEOUT = 2.0
# How long a test listens to be sure no reply comes.
SILENCE = 0.2
DLE_EOT_1 = STATUS_QUERIES[1]


def label_page(seed: int, width: int = 732, height: int = 342) -> Image.Image:
    """A page like a label: text, bars and a box, placed at random."""
    rng = random.Random(seed)
    page = Image.new("1", (width, height), 255)
    draw = ImageDraw.Draw(page)
    draw.text((rng.randrange(width // 2), 2), f"PART-{seed}", fill=0)
    for x in range(rng.randrange(8), width - 4, rng.randrange(3, 9)):
        draw.rectangle((x, height // 3, x + rng.randrange(2), height - 4), fill=0)
    draw.rectangle((0, 0, width - 1, height - 1), outline=0)
    return page


def printed_as(label: ReceivedLabel, page: Image.Image) -> bool:
    """The label shows exactly the page; raster padding right of it is white."""
    if label.height_dots != page.height or label.width_dots != (page.width + 7) // 8 * 8:
        return False
    body = label.image.crop((0, 0, page.width, page.height))
    padding = label.image.crop((page.width, 0, label.width_dots, page.height))
    white = padding.width == 0 or padding.getextrema() == (255, 255)
    return white and ImageChops.difference(body, page).getbbox() is None


def feed_in_chunks(sim: EscposSimulator, data: bytes, size: int) -> bytes:
    return b"".join(sim.feed(data[i : i + size]) for i in range(0, len(data), size))


def all_printed(labels: list[ReceivedLabel], pages: list[Image.Image]) -> bool:
    """One label per page, in order, each showing its page."""
    return len(labels) == len(pages) and all(map(printed_as, labels, pages))


async def until(condition: Callable[[], bool]) -> None:
    """Poll state that has no event of its own (server bookkeeping, console output)."""
    async with asyncio.timeout(REPLY_TIMEOUT):
        while not condition():  # noqa: ASYNC110 - nothing to wait on but the state itself
            await asyncio.sleep(0.001)


def test_multi_page_job_with_copies_prints_every_page_in_order() -> None:
    pages = [label_page(1), label_page(2), label_page(3)]
    sim = EscposSimulator()
    assert sim.feed(encode_job(pages, copies=2, cut="full", feed_dots=24)) == b""
    assert len(sim.labels) == 6
    for label, page in zip(sim.labels, pages * 2, strict=True):
        assert printed_as(label, page)
        assert (label.cut, label.feed_dots) == ("full", 24)
    assert sim.cuts == ["full"] * 6
    assert [label.number for label in sim.labels] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1021, 4097])
def test_job_split_into_any_chunk_size(chunk: int) -> None:
    pages = [label_page(4, 100, 300), label_page(5, 100, 300)]  # several bands each
    sim = EscposSimulator()
    feed_in_chunks(sim, encode_job(pages, copies=2, cut="partial"), chunk)
    assert all_printed(sim.labels, pages * 2)
    assert sim.cuts == ["partial"] * 4


def test_job_split_at_every_byte_boundary() -> None:
    page = label_page(6, 20, 6)
    job = encode_job([page], feed_dots=300) + DLE_EOT_1
    for cut_at in range(len(job) + 1):
        sim = EscposSimulator()
        assert sim.feed(job[:cut_at]) + sim.feed(job[cut_at:]) == b"\x12"
        assert len(sim.labels) == 1
        assert printed_as(sim.labels[0], page)
        assert sim.labels[0].feed_dots == 300


def test_without_cut_each_page_ends_at_its_print_and_feed() -> None:
    pages = [label_page(7, 64, 40), label_page(8, 64, 40)]
    sim = EscposSimulator()
    sim.feed(encode_job(pages, cut="none", feed_dots=0))
    assert all_printed(sim.labels, pages)
    assert [label.cut for label in sim.labels] == ["none", "none"]
    assert sim.cuts == []


def test_idle_status_replies_have_only_the_fixed_bits() -> None:
    sim = EscposSimulator()
    replies = sim.feed(b"".join(STATUS_QUERIES.values()))
    assert replies == b"\x12\x12\x12\x12"
    assert decode_status(dict(zip(STATUS_QUERIES, replies, strict=True))).online is True


@pytest.mark.parametrize(
    ("fault", "replies", "flags"),
    [
        ("paper-out", "1a 32 12 7e", {"offline", "paper_end_stop", "paper_near_end", "paper_out"}),
        ("paper-near-end", "12 12 12 1e", {"paper_near_end"}),
        ("cover-open", "1a 16 12 12", {"offline", "cover_open"}),
        ("cutter-error", "1a 52 1a 12", {"offline", "error", "cutter_error"}),
        ("feed-button", "5a 1a 12 12", {"offline", "feed_button_pressed", "feed_button"}),
        ("recovery-wait", "3a 12 12 12", {"offline", "waiting_for_recovery"}),
        ("presenter-waiting", "12 12 12 52", {"presenter_waiting"}),
    ],
)
def test_fault_status_replies(fault: str, replies: str, flags: set[str]) -> None:
    sim = EscposSimulator()
    sim.set_fault(fault)
    answer = sim.feed(b"".join(STATUS_QUERIES.values()))
    assert answer == bytes.fromhex(replies)
    status = decode_status(dict(zip(STATUS_QUERIES, answer, strict=True)))
    assert {name for name in status.__dataclass_fields__ if getattr(status, name)} == flags


@pytest.mark.parametrize("fault", ["paper-out", "cover-open", "cutter-error", "offline"])
def test_jobs_received_in_a_blocking_fault_are_dropped(fault: str) -> None:
    page = label_page(9, 64, 40)
    sim = EscposSimulator()
    sim.set_fault(fault)
    sim.feed(encode_job([page]))
    assert sim.labels == []
    assert sim.cuts == []
    sim.clear_fault(fault)
    sim.feed(encode_job([page]))
    assert len(sim.labels) == 1
    assert printed_as(sim.labels[0], page)


def test_paper_near_end_still_prints() -> None:
    sim = EscposSimulator()
    sim.set_fault("paper-near-end")
    sim.feed(encode_job([label_page(10, 64, 40)]))
    assert len(sim.labels) == 1


def test_offline_printer_answers_nothing() -> None:
    sim = EscposSimulator()
    sim.set_fault("offline")
    assert sim.feed(b"".join(STATUS_QUERIES.values())) == b""
    sim.clear_fault()
    assert sim.feed(DLE_EOT_1) == b"\x12"


def dle_eot_page() -> Image.Image:
    """A page whose raster bytes contain DLE EOT 1 (10 04 01)."""
    ink = Image.frombytes("1", (24, 2), bytes.fromhex("100401 100402"))
    return ImageChops.invert(ink)


def test_status_query_bytes_inside_raster_data_are_image_data() -> None:
    page = dle_eot_page()
    job = encode_job([page])
    assert STATUS_QUERIES[1] in job
    sim = EscposSimulator(realtime_status_in_raster=False)
    assert sim.feed(job) == b""
    assert printed_as(sim.labels[0], page)


def test_status_query_bytes_inside_raster_data_are_answered_as_epson_does() -> None:
    sim = EscposSimulator()
    assert sim.feed(encode_job([dle_eot_page()])) == b"\x12\x12"
    assert len(sim.labels) == 1
    # Executed on receipt: answered even while the image itself is dropped.
    sim.set_fault("cover-open")
    assert sim.feed(encode_job([dle_eot_page()])) == b"\x1a\x16"
    assert len(sim.labels) == 1


def test_status_query_inside_raster_data_is_answered_on_receipt_even_split() -> None:
    sim = EscposSimulator()
    job = encode_job([dle_eot_page()])
    at = job.index(STATUS_QUERIES[1]) + 1
    # The image is not complete yet, the reply comes anyway; a query split across chunks counts once.
    assert sim.feed(job[:at]) == b""
    assert sim.feed(job[at : at + 3]) == b"\x12"
    assert sim.feed(job[at + 3 :] + STATUS_QUERIES[4]) == b"\x12\x12"
    assert len(sim.labels) == 1


def test_init_discards_rows_of_a_job_that_was_cut_off() -> None:
    page = label_page(11, 64, 600)  # three bands
    job = encode_job([page])
    sim = EscposSimulator()
    first_two_bands = job.index(b"\x1dv0", job.index(b"\x1dv0", 2) + 1)
    sim.feed(job[:first_two_bands])
    assert sim.labels == []
    sim.feed(job)
    assert len(sim.labels) == 1
    assert printed_as(sim.labels[0], page)


def test_commands_it_does_not_act_on_are_skipped_by_their_length() -> None:
    page = label_page(12, 32, 8)
    body = encode_job([page])[2:]
    noise = (
        b"\x1b!\x1d"  # ESC ! n, with n = GS
        + b"\x1ba\x01"  # ESC a: centre
        + b"\x1d(L\x02\x00\x1d\x76"  # GS ( L with two data bytes that look like GS v
        + b"hello\n"  # text and LF
        + b"\x10\x05\x02"  # DLE ENQ 2
    )
    sim = EscposSimulator()
    assert sim.feed(b"\x1b@" + noise + body) == b""
    assert printed_as(sim.labels[-1], page)


def test_double_width_and_height_raster() -> None:
    raster = bytes.fromhex("1d7630 03 0100 0200 80 01")  # m = 3, 8 x 2 dots
    sim = EscposSimulator()
    sim.feed(raster + bytes.fromhex("1b4a00"))
    image = sim.labels[0].image
    assert image.size == (16, 4)
    assert [image.getpixel((x, 0)) for x in (0, 1, 2)] == [0, 0, 255]
    assert [image.getpixel((15, y)) for y in (1, 2, 3)] == [255, 0, 0]


def test_print_hook_gets_one_line_per_label() -> None:
    lines: list[str] = []
    sim = EscposSimulator(on_label=lambda label: lines.append(label.describe()))
    sim.feed(encode_job([label_page(13)], copies=2))
    assert lines == ["label 1: 736x342 dots, copy 1/1", "label 2: 736x342 dots, copy 1/1"]


def test_unknown_fault_is_rejected() -> None:
    with pytest.raises(ValueError, match="known:"):
        EscposSimulator().set_fault("head-open")


async def query(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    writer.write(data)
    await writer.drain()
    return await asyncio.wait_for(reader.readexactly(1), REPLY_TIMEOUT)


async def send_in_chunks(writer: asyncio.StreamWriter, data: bytes, size: int) -> None:
    for i in range(0, len(data), size):
        writer.write(data[i : i + size])
        await writer.drain()


async def test_tcp_status_and_job_in_odd_chunks() -> None:
    pages = [label_page(14), label_page(15)]
    sim = EscposSimulator()
    async with await serve_tcp(sim) as server:
        assert server.url == f"tcp://127.0.0.1:{server.port}"
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert await query(reader, writer, STATUS_QUERIES[4]) == b"\x12"
        await send_in_chunks(writer, encode_job(pages, copies=2), 1021)
        # Answered in order: the job before it has been taken in completely.
        assert await query(reader, writer, DLE_EOT_1) == b"\x12"
        assert all_printed(sim.labels, pages * 2)
        writer.close()
        await writer.wait_closed()


async def test_tcp_disconnect_mid_job_then_full_retry() -> None:
    page = label_page(16)
    job = encode_job([page], layout="small-buffer")  # 4 KB bands
    sim = EscposSimulator()
    sim.set_fault("disconnect-mid-job", after_bytes=10_000)
    async with await serve_tcp(sim) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        with contextlib.suppress(ConnectionError):
            writer.write(job)
            await writer.drain()
        assert await closed_by_peer(reader)
        writer.close()
        assert sim.labels == []
        sim.clear_fault()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(job)
        assert await query(reader, writer, DLE_EOT_1) == b"\x12"
        assert len(sim.labels) == 1
        assert printed_as(sim.labels[0], page)
        writer.close()


async def test_tcp_slow_link_delays_replies_and_keeps_data() -> None:
    page = label_page(17, 64, 100)  # 800 bytes: four slow chunks
    sim = EscposSimulator()
    sim.set_fault("slow-link", delay=0.02)
    async with await serve_tcp(sim) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        writer.write(encode_job([page]))
        assert await query(reader, writer, DLE_EOT_1) == b"\x12"
        assert time.monotonic() - started >= 4 * 0.02
        assert printed_as(sim.labels[0], page)
        writer.close()


async def test_tcp_refuses_a_second_connection_only_with_the_fault() -> None:
    sim = EscposSimulator()
    async with await serve_tcp(sim) as server:
        first = await asyncio.open_connection("127.0.0.1", server.port)
        second = await asyncio.open_connection("127.0.0.1", server.port)
        assert await query(*first, DLE_EOT_1) == b"\x12"
        assert await query(*second, DLE_EOT_1) == b"\x12"
        second[1].close()
        await until(lambda: len(server.connections) == 1)
        sim.set_fault("refuse-second-connection")
        refused = await asyncio.open_connection("127.0.0.1", server.port)
        assert await closed_by_peer(refused[0])
        assert await query(*first, DLE_EOT_1) == b"\x12"
        first[1].close()
        refused[1].close()


async def test_tcp_close_drops_open_connections() -> None:
    sim = EscposSimulator()
    server = await serve_tcp(sim)
    port = server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await query(reader, writer, DLE_EOT_1) == b"\x12"
    server.close()
    await server.wait_closed()
    assert await closed_by_peer(reader)
    writer.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


def pty_port(path: str, timeout: float = REPLY_TIMEOUT) -> serial.Serial:
    return serial.Serial(path, baudrate=9600, timeout=timeout)


def pty_exchange(port: serial.Serial, job: bytes, chunk: int, query: bytes, n: int) -> bytes:
    for i in range(0, len(job), chunk):
        port.write(job[i : i + chunk])
    port.write(query)
    return bytes(port.read(n))


async def test_pty_status_and_job_in_odd_chunks() -> None:
    pages = [label_page(18), label_page(19)]
    sim = EscposSimulator()
    async with await serve_pty(sim) as session:
        assert session.url == f"serial://{session.path}"
        assert re.fullmatch(r"/dev/pts/\d+", session.path)
        port = await asyncio.to_thread(pty_port, session.path)
        try:
            job = encode_job(pages, copies=2)
            replies = await asyncio.to_thread(
                pty_exchange, port, job, 997, b"".join(STATUS_QUERIES.values()), 4
            )
        finally:
            port.close()
    assert replies == b"\x12\x12\x12\x12"
    assert all_printed(sim.labels, pages * 2)


async def test_pty_disconnect_goes_deaf_until_cleared() -> None:
    page = label_page(20, 64, 64)
    sim = EscposSimulator()
    sim.set_fault("disconnect-mid-job", after_bytes=100)
    async with await serve_pty(sim) as session:
        port = await asyncio.to_thread(pty_port, session.path, SILENCE)
        try:
            job = encode_job([page])
            assert await asyncio.to_thread(pty_exchange, port, job, 64, DLE_EOT_1, 1) == b""
            assert sim.labels == []
            sim.clear_fault()
            assert await asyncio.to_thread(pty_exchange, port, job, 64, DLE_EOT_1, 1) == b"\x12"
        finally:
            port.close()
    assert len(sim.labels) == 1
    assert printed_as(sim.labels[0], page)


async def test_run_simulator_reports_where_it_listens_and_each_label() -> None:
    out = io.StringIO()
    task = asyncio.create_task(run_simulator("escpos", port=0, out=out))
    try:
        await until(lambda: "listening on" in out.getvalue())
        match = re.search(r"escpos simulator listening on tcp://127\.0\.0\.1:(\d+)", out.getvalue())
        assert match is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", int(match[1]))
        writer.write(encode_job([label_page(21)], copies=2))
        assert await query(reader, writer, DLE_EOT_1) == b"\x12"
        writer.close()
        assert out.getvalue().splitlines()[1:] == [
            "label 1: 736x342 dots, copy 1/1",
            "label 2: 736x342 dots, copy 1/1",
        ]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_simulator_on_a_pty_with_a_fault() -> None:
    out = io.StringIO()
    task = asyncio.create_task(run_simulator("escpos", pty=True, fault="paper-out", out=out))
    try:
        await until(lambda: "simulator on" in out.getvalue())
        match = re.search(r"on serial://(/dev/pts/\d+) \(fault: paper-out\)", out.getvalue())
        assert match is not None
        port = await asyncio.to_thread(pty_port, match[1])
        try:
            reply = await asyncio.to_thread(pty_exchange, port, b"", 1, STATUS_QUERIES[4], 1)
        finally:
            port.close()
        assert decode_status({4: reply[0]}).paper_out is True
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
