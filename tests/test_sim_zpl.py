from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import random
import re
import time
import zlib
from collections.abc import Callable

import pytest
import serial
from PIL import Image, ImageChops, ImageDraw

from drivers.sim import ReceivedLabel, ZplSimulator, run_simulator, serve_pty, serve_tcp
from drivers.zpl.protocol import (
    EXTENDED_STATUS_QUERY,
    HOST_IDENTIFICATION_QUERY,
    HOST_STATUS_QUERY,
    ZplError,
    ZplWarning,
    encode_job,
    encode_page,
    parse_extended_status,
    parse_host_identification,
    parse_host_status,
    parse_sgd_reply,
    sgd_getvar,
)

# Generous bound for a reply over loopback or a pty; a healthy run answers in microseconds.
from tests.conftest import closed_by_peer
from tests.waiting import wait_until

REPLY_TIMEOUT = 2.0
# How long a test listens to be sure no reply comes.
SILENCE = 0.2
FRAME_END = b"\x03\r\n"
ODOMETER = sgd_getvar("odometer.total_label_count")


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


def same(image: Image.Image, page: Image.Image) -> bool:
    return image.size == page.size and ImageChops.difference(image, page).getbbox() is None


def all_printed(labels: list[ReceivedLabel], pages: list[Image.Image]) -> bool:
    """One label per page, in order, each showing exactly its page."""
    return len(labels) == len(pages) and all(map(same, (lb.image for lb in labels), pages))


def ink_page(width: int, rows: list[bytes]) -> Image.Image:
    return ImageChops.invert(Image.frombytes("1", (width, len(rows)), b"".join(rows)))


async def until(condition: Callable[[], bool]) -> None:
    """Poll state that has no event of its own (server bookkeeping, console output)."""
    await wait_until(condition, REPLY_TIMEOUT)


def test_multi_page_job_prints_each_page_its_copies() -> None:
    a, b = label_page(1), label_page(2)
    sim = ZplSimulator()
    assert sim.feed(encode_job([a, b], copies=2, darkness=20, speed=4)) == b""
    assert all_printed(sim.labels, [a, a, b, b])
    assert [(label.copy, label.copies) for label in sim.labels] == [(1, 2), (2, 2)] * 2
    assert (sim.darkness, sim.speed) == (20, 4)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1021, 4097])
def test_job_split_into_any_chunk_size(chunk: int) -> None:
    pages = [label_page(3, 120, 90), label_page(4, 120, 90)]
    job = encode_job(pages, copies=2) + ODOMETER
    sim = ZplSimulator()
    replies = b"".join(sim.feed(job[i : i + chunk]) for i in range(0, len(job), chunk))
    assert replies == b'"4"'
    assert all_printed(sim.labels, [pages[0], pages[0], pages[1], pages[1]])


def test_job_split_at_every_byte_boundary() -> None:
    page = label_page(5, 24, 6)
    job = encode_page(page) + EXTENDED_STATUS_QUERY
    for cut_at in range(len(job) + 1):
        sim = ZplSimulator()
        reply = sim.feed(job[:cut_at]) + sim.feed(job[cut_at:])
        assert parse_extended_status(reply).errors == ZplError(0)
        assert all_printed(sim.labels, [page])


def test_idle_status_replies() -> None:
    sim = ZplSimulator()
    sim.feed(encode_page(label_page(6), copies=3))
    status = parse_host_status(sim.feed(HOST_STATUS_QUERY))
    flags = (status.paper_out, status.paused, status.head_up, status.ribbon_out)
    assert flags == (False, False, False, False)
    assert status.label_length_dots == 342
    assert (status.formats_in_buffer, status.labels_remaining) == (0, 0)
    extended = parse_extended_status(sim.feed(EXTENDED_STATUS_QUERY))
    assert not extended.error_present
    assert extended.errors == ZplError(0)
    info = parse_host_identification(sim.feed(HOST_IDENTIFICATION_QUERY))
    assert (info.model, info.dpi) == ("ZTC ZD421-300dpi ZPL", 300)


def test_odometer_counts_every_printed_label() -> None:
    sim = ZplSimulator()
    assert parse_sgd_reply(sim.feed(ODOMETER)) == "0"
    sim.feed(encode_job([label_page(7, 64, 32), label_page(8, 64, 32)], copies=3))
    assert parse_sgd_reply(sim.feed(ODOMETER)) == "6"


def test_friendly_name_and_unknown_settings() -> None:
    sim = ZplSimulator()
    assert parse_sgd_reply(sim.feed(sgd_getvar("device.friendly_name"))) == "ZD421-SIM"
    sim.feed(b'! U1 setvar "device.friendly_name" "Stores bench"\r\n')
    assert parse_sgd_reply(sim.feed(sgd_getvar("device.friendly_name"))) == "Stores bench"
    assert parse_sgd_reply(sim.feed(sgd_getvar("no.such.thing"))) == "?"


@pytest.mark.parametrize(
    ("fault", "error", "setting"),
    [
        ("paper-out", ZplError.MEDIA_OUT, ("media.status", "out")),
        ("head-open", ZplError.HEAD_OPEN, ("head.latch", "open")),
        ("ribbon-out", ZplError.RIBBON_OUT, None),
    ],
)
def test_media_faults_silence_host_status_and_drop_jobs(
    fault: str, error: ZplError, setting: tuple[str, str] | None
) -> None:
    page = label_page(9, 64, 32)
    sim = ZplSimulator()
    sim.set_fault(fault)
    assert sim.feed(HOST_STATUS_QUERY) == b""
    assert parse_extended_status(sim.feed(EXTENDED_STATUS_QUERY)).errors == error
    assert parse_host_identification(sim.feed(HOST_IDENTIFICATION_QUERY)).dpmm == 12
    if setting is not None:
        assert parse_sgd_reply(sim.feed(sgd_getvar(setting[0]))) == setting[1]
    sim.feed(encode_page(page))
    assert sim.labels == []
    sim.clear_fault(fault)
    assert parse_host_status(sim.feed(HOST_STATUS_QUERY)).paper_out is False
    sim.feed(encode_page(page))
    assert all_printed(sim.labels, [page])


def test_host_status_shows_each_condition_it_can() -> None:
    sim = ZplSimulator()
    sim.set_fault("paused")
    assert parse_host_status(sim.feed(HOST_STATUS_QUERY)).paused is True
    sim.clear_fault()
    sim.feed(b"^XA^PW16")
    assert parse_host_status(sim.feed(HOST_STATUS_QUERY)).partial_format is True


def test_paused_printer_keeps_formats_until_resumed() -> None:
    a, b = label_page(10, 64, 32), label_page(11, 64, 32)
    sim = ZplSimulator()
    sim.set_fault("paused")
    sim.feed(encode_page(a, copies=2) + encode_page(b, copies=3))
    assert sim.labels == []
    status = parse_host_status(sim.feed(HOST_STATUS_QUERY))
    assert status.paused is True
    assert (status.formats_in_buffer, status.labels_remaining) == (2, 5)
    assert parse_extended_status(sim.feed(EXTENDED_STATUS_QUERY)).errors == ZplError.PAUSED
    sim.feed(b"~PS")
    assert all_printed(sim.labels, [a, a, b, b, b])
    assert parse_host_status(sim.feed(HOST_STATUS_QUERY)).formats_in_buffer == 0


def test_clearing_pause_prints_and_cancel_all_drops_waiting_formats() -> None:
    page = label_page(12, 64, 32)
    sim = ZplSimulator()
    sim.set_fault("paused")
    sim.feed(encode_page(page))
    sim.clear_fault("paused")
    assert all_printed(sim.labels, [page])
    sim.set_fault("paused")
    sim.feed(encode_page(page) + b"~JA")
    sim.clear_fault()
    assert len(sim.labels) == 1


def test_paper_near_end_is_a_warning_and_still_prints() -> None:
    sim = ZplSimulator()
    sim.set_fault("paper-near-end")
    extended = parse_extended_status(sim.feed(EXTENDED_STATUS_QUERY))
    assert extended.warnings == ZplWarning.PAPER_NEAR_END
    assert extended.errors == ZplError(0)
    sim.feed(encode_page(label_page(13, 64, 32)))
    assert len(sim.labels) == 1


def test_offline_printer_answers_nothing_and_prints_nothing() -> None:
    sim = ZplSimulator()
    sim.set_fault("offline")
    queries = HOST_STATUS_QUERY + EXTENDED_STATUS_QUERY + HOST_IDENTIFICATION_QUERY + ODOMETER
    assert sim.feed(queries + encode_page(label_page(14, 64, 32))) == b""
    assert sim.labels == []


def test_tilde_command_inside_graphic_data_runs_at_once_and_ends_the_data() -> None:
    sim = ZplSimulator()
    reply = sim.feed(b"^XA^PW16^LL2^FO0,0^GFA,4,4,2,FF~HS")
    assert parse_host_status(reply).partial_format is True
    sim.feed(b"00FF^FS^XZ")
    # The data stopped at ~HS; the rest of the bitmap is white.
    assert all_printed(sim.labels, [ink_page(16, [b"\xff\x00", b"\x00\x00"])])


def test_binary_graphic_is_read_by_count() -> None:
    rows = [b"^~", b"\x00\xff"]  # bytes that look like ZPL command prefixes
    sim = ZplSimulator()
    sim.feed(b"^XA^PW16^LL2^FO0,0^GFB,4,4,2," + b"".join(rows) + b"^FS^XZ")
    assert all_printed(sim.labels, [ink_page(16, rows)])


def test_z64_graphic() -> None:
    rows = [b"\x0f\xf0", b"\xaa\x55"]
    data = base64.b64encode(zlib.compress(b"".join(rows)))
    sim = ZplSimulator()
    sim.feed(b"^XA^PW16^LL2^FO0,0^GFA,4,4,2,:Z64:" + data + b":ABCD^FS^XZ")
    assert all_printed(sim.labels, [ink_page(16, rows)])


def test_graphics_are_placed_at_label_home_plus_field_origin_and_black_wins() -> None:
    sim = ZplSimulator()
    sim.feed(b"^XA^PW24^LL4^LH8,1^FO0,0^GFA,2,2,1,F0F0^FS^FO4,0^GFA,2,2,1,0F0F^FS^XZ")
    expected = ink_page(24, [b"\x00\x00\x00", b"\x00\xf0\xf0", b"\x00\xf0\xf0", b"\x00\x00\x00"])
    assert all_printed(sim.labels, [expected])


def test_format_cut_off_by_its_connection_is_dropped() -> None:
    page = label_page(15, 64, 32)
    job = encode_page(page)
    sim = ZplSimulator()
    channel = sim.open_channel()
    channel.feed(job[: len(job) // 2])
    channel.close()
    assert sim.labels == []
    sim.open_channel().feed(job)
    assert all_printed(sim.labels, [page])


def test_print_hook_gets_one_line_per_label() -> None:
    lines: list[str] = []
    sim = ZplSimulator(on_label=lambda label: lines.append(label.describe()))
    sim.feed(encode_page(label_page(16), copies=2))
    assert lines == ["label 1: 732x342 dots, copy 1/2", "label 2: 732x342 dots, copy 2/2"]


def test_unknown_fault_is_rejected() -> None:
    with pytest.raises(ValueError, match="known:"):
        ZplSimulator().set_fault("cover-open")


async def ask(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, query: bytes, frames: int = 1
) -> bytes:
    """Send a query and read `frames` STX...ETX CR LF strings (0: one quoted SGD value)."""
    writer.write(query)
    await writer.drain()
    async with asyncio.timeout(REPLY_TIMEOUT):
        if frames == 0:
            return await reader.readuntil(b'"') + await reader.readuntil(b'"')
        return b"".join([await reader.readuntil(FRAME_END) for _ in range(frames)])


async def test_tcp_status_and_job_in_odd_chunks() -> None:
    pages = [label_page(17), label_page(18)]
    sim = ZplSimulator()
    async with await serve_tcp(sim) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        status = parse_host_status(await ask(reader, writer, HOST_STATUS_QUERY, 3))
        assert status.paper_out is False
        job = encode_job(pages, copies=2)
        for i in range(0, len(job), 1021):
            writer.write(job[i : i + 1021])
            await writer.drain()
        # Answered in order: the job before it has been taken in completely.
        assert parse_sgd_reply(await ask(reader, writer, ODOMETER, 0)) == "4"
        assert all_printed(sim.labels, [pages[0], pages[0], pages[1], pages[1]])
        writer.close()
        await writer.wait_closed()


async def test_tcp_no_host_status_reply_while_head_open() -> None:
    sim = ZplSimulator()
    sim.set_fault("head-open")
    async with await serve_tcp(sim) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(HOST_STATUS_QUERY)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), SILENCE)
        extended = parse_extended_status(await ask(reader, writer, EXTENDED_STATUS_QUERY))
        assert extended.errors == ZplError.HEAD_OPEN
        writer.close()


async def test_tcp_disconnect_mid_job_then_full_retry() -> None:
    page = label_page(19)
    job = encode_page(page)
    sim = ZplSimulator()
    sim.set_fault("disconnect-mid-job", after_bytes=len(job) // 2)
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
        assert parse_sgd_reply(await ask(reader, writer, ODOMETER, 0)) == "1"
        assert all_printed(sim.labels, [page])
        writer.close()


async def test_tcp_slow_link_delays_replies() -> None:
    sim = ZplSimulator()
    sim.set_fault("slow-link", delay=0.05)
    async with await serve_tcp(sim) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        started = time.monotonic()
        await ask(reader, writer, HOST_IDENTIFICATION_QUERY)
        assert time.monotonic() - started >= 0.05
        writer.close()


async def test_tcp_refuses_a_second_connection_with_the_fault() -> None:
    sim = ZplSimulator()
    sim.set_fault("refuse-second-connection")
    async with await serve_tcp(sim) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        await ask(reader, writer, HOST_IDENTIFICATION_QUERY)
        refused = await asyncio.open_connection("127.0.0.1", server.port)
        assert await closed_by_peer(refused[0])
        refused[1].close()
        writer.close()
        await until(lambda: not server.connections)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        assert parse_host_identification(await ask(reader, writer, HOST_IDENTIFICATION_QUERY))
        writer.close()


def pty_exchange(path: str, job: bytes, chunk: int, query: bytes, frames: int) -> bytes:
    with serial.Serial(path, baudrate=9600, timeout=REPLY_TIMEOUT) as port:
        for i in range(0, len(job), chunk):
            port.write(job[i : i + chunk])
        port.write(query)
        return b"".join(bytes(port.read_until(FRAME_END)) for _ in range(frames))


async def test_pty_status_and_job_in_odd_chunks() -> None:
    pages = [label_page(20), label_page(21)]
    sim = ZplSimulator()
    async with await serve_pty(sim) as session:
        job = encode_job(pages)
        reply = await asyncio.to_thread(pty_exchange, session.path, job, 997, HOST_STATUS_QUERY, 3)
    assert parse_host_status(reply).label_length_dots == 342
    assert all_printed(sim.labels, pages)


async def test_run_simulator_reports_where_it_listens_and_each_label() -> None:
    out = io.StringIO()
    task = asyncio.create_task(run_simulator("zpl", port=0, fault="paper-near-end", out=out))
    try:
        await until(lambda: "listening on" in out.getvalue())
        pattern = r"zpl simulator listening on tcp://127\.0\.0\.1:(\d+) \(fault: paper-near-end\)"
        match = re.search(pattern, out.getvalue())
        assert match is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", int(match[1]))
        writer.write(encode_page(label_page(22), copies=2))
        assert parse_sgd_reply(await ask(reader, writer, ODOMETER, 0)) == "2"
        writer.close()
        assert out.getvalue().splitlines()[1:] == [
            "label 1: 732x342 dots, copy 1/2",
            "label 2: 732x342 dots, copy 2/2",
        ]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
