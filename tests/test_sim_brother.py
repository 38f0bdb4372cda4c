"""The Brother QL simulator on its own: split streams, replies, pushed frames and faults."""

from __future__ import annotations

import random

import pytest
from PIL import Image

from drivers.brother_ql.protocol import (
    STATUS_SIZE,
    Error1,
    Error2,
    Notification,
    PageOptions,
    Phase,
    StatusType,
    decode_status,
    encode_job,
)
from drivers.brother_ql.simulator import BrotherQlSimulator
from drivers.brother_ql.tables import LABELS, MODELS
from tests.driver_fakes import same

OPTIONS = PageOptions(MODELS["QL-820NWB"], LABELS["62"])


def page(seed: int) -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes("1", (696, 150), rng.randbytes(87 * 150))


def frames(reply: bytes) -> list[tuple[int, int, int]]:
    """(status type, phase, notification) of each frame in a reply."""
    assert len(reply) % STATUS_SIZE == 0
    decoded = [decode_status(reply[i : i + STATUS_SIZE]) for i in range(0, len(reply), 32)]
    return [(f.status_type, f.phase, f.notification) for f in decoded]


PRINTED = [
    (StatusType.PHASE_CHANGE, Phase.PRINTING, 0),
    (StatusType.PRINTING_COMPLETED, Phase.PRINTING, 0),
    (StatusType.PHASE_CHANGE, Phase.RECEIVING, 0),
]


def test_a_stream_split_anywhere_prints_the_same_labels() -> None:
    pages = [page(1), page(2)]
    job = encode_job([(p,) for p in pages], OPTIONS)
    whole, bytewise = BrotherQlSimulator(), BrotherQlSimulator()
    assert frames(whole.feed(job)) == PRINTED * 2
    replies = b"".join(bytewise.feed(job[i : i + 1]) for i in range(len(job)))
    assert frames(replies) == PRINTED * 2
    for sim in (whole, bytewise):
        assert all(map(same, (label.image for label in sim.labels), pages))


def test_the_status_reply_names_model_media_and_mode() -> None:
    sim = BrotherQlSimulator(model="QL-1100", media="102x51")
    reply = decode_status(sim.feed(b"\x1biS"))
    assert (reply.model_code, reply.status_type, reply.phase) == (0x43, StatusType.REPLY, 0)
    assert (reply.media_kind, reply.media_width_mm, reply.media_length_mm) == ("die-cut", 102, 51)


@pytest.mark.parametrize(
    ("fault", "errors1", "errors2"),
    [
        ("no-media", Error1.NO_MEDIA, Error2(0)),
        ("end-of-media", Error1.END_OF_MEDIA, Error2(0)),
        ("cutter-jam", Error1.CUTTER_JAM, Error2(0)),
        ("cover-open", Error1(0), Error2.COVER_OPEN),
    ],
)
def test_a_blocking_fault_shows_in_the_reply_and_refuses_pages_with_an_error_frame(
    fault: str, errors1: Error1, errors2: Error2
) -> None:
    sim = BrotherQlSimulator()
    sim.set_fault(fault)
    reply = decode_status(sim.feed(b"\x1biS"))
    assert (reply.errors1, reply.errors2) == (errors1, errors2)
    pushed = sim.feed(encode_job([(page(1),)], OPTIONS))
    error = decode_status(pushed)
    assert error.status_type == StatusType.ERROR
    assert (error.errors1, error.errors2) == (errors1, errors2)
    assert sim.labels == []


def test_no_media_reports_no_media_loaded() -> None:
    sim = BrotherQlSimulator()
    sim.set_fault("no-media")
    reply = decode_status(sim.feed(b"\x1biS"))
    assert (reply.media_kind, reply.media_width_mm) == (None, 0)


def test_wrong_media_loads_29x90_and_refuses_a_62_mm_page() -> None:
    sim = BrotherQlSimulator()
    sim.set_fault("wrong-media")
    reply = decode_status(sim.feed(b"\x1biS"))
    assert (reply.media_kind, reply.media_width_mm, reply.media_length_mm) == ("die-cut", 29, 90)
    error = decode_status(sim.feed(encode_job([(page(1),)], OPTIONS)))
    assert (error.status_type, error.errors2) == (StatusType.ERROR, Error2.REPLACE_MEDIA)
    assert sim.labels == []


def test_overheat_cools_down_before_each_page_and_then_prints() -> None:
    sim = BrotherQlSimulator()
    sim.set_fault("overheat")
    assert decode_status(sim.feed(b"\x1biS")).notification == Notification.COOLING_STARTED
    pushed = frames(sim.feed(encode_job([(page(1),)], OPTIONS)))
    assert pushed == [
        PRINTED[0],
        (StatusType.NOTIFICATION, Phase.PRINTING, Notification.COOLING_STARTED),
        (StatusType.NOTIFICATION, Phase.PRINTING, Notification.COOLING_FINISHED),
        *PRINTED[1:],
    ]
    assert len(sim.labels) == 1


def test_offline_answers_nothing_and_prints_nothing() -> None:
    sim = BrotherQlSimulator()
    sim.set_fault("offline")
    assert sim.feed(b"\x1biS" + encode_job([(page(1),)], OPTIONS)) == b""
    assert sim.labels == []


def test_a_page_cut_off_by_the_end_of_the_stream_is_dropped() -> None:
    sim = BrotherQlSimulator()
    job = encode_job([(page(1),)], OPTIONS)
    channel = sim.open_channel()
    channel.feed(job[:-1])
    channel.close()
    fresh = sim.open_channel()
    fresh.feed(b"\x1a")
    assert sim.labels == []


def test_a_raster_line_of_the_wrong_length_is_refused_with_a_communication_error() -> None:
    sim = BrotherQlSimulator()
    stream = b"\x1b@\x1biz\x86\x0a\x3e\x00\x01\x00\x00\x00\x00\x00g\x00\x02\xff\xff\x1a"
    error = decode_status(sim.feed(stream))
    assert (error.status_type, error.errors2) == (StatusType.ERROR, Error2.COMMUNICATION)
    assert sim.labels == []
