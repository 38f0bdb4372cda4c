"""Print options declared by drivers: declarations checked, requests validated, options published."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from agent.api.print_options import options_form
from agent.api.schema import driver_options_of, openapi_document
from agent.appkeys import REGISTRY
from agent.discovery import discover
from drivers.base import LabelPrinterDriver
from drivers.print_options import (
    GENERIC_OPTIONS,
    PrintOption,
    declaration_problems,
)
from tests.conftest import Headers, create_machine, label_pdf, wait_for_job
from tests.fake_drivers import RecordingDriver

Client = TestClient[Any, Any]
GENERIC = ["copies", "threshold", "dither", "rotation"]


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        (PrintOption("Bad-Name", "integer", "Bad"), "is not lower_case_with_underscores"),
        (PrintOption("paper", "choice", "Paper"), "has no choices"),
        (PrintOption("mixed", "choice", "M", choices=((1, "one"), ("2", "two"))), "mixes"),
        (PrintOption("pick", "choice", "P", default="c", choices=(("a", "A"),)), "not one of"),
        (PrintOption("flag", "boolean", "F", choices=((True, "yes"),)), "has choices"),
        (PrintOption("flag", "choice", "F", choices=((True, "yes"),)), "make it boolean"),
        (PrintOption("flag", "boolean", "F", max_value=3), "has bounds"),
        (PrintOption("level", "integer", "L", max_length=3), "has a max_length"),
        (PrintOption("level", "integer", "L", default=9, max_value=5), "does not fit"),
        (PrintOption("level", "integer", "L", default=True), "does not fit"),
        (PrintOption("text", "string", "T", default="too long", max_length=3), "does not fit"),
        (PrintOption("dither", "boolean", "Dither"), "is taken"),
    ],
)
def test_unsound_declarations_are_named(option: PrintOption, problem: str) -> None:
    problems = declaration_problems([option])
    assert len(problems) == 1
    assert problem in problems[0]
    assert option.name in problems[0]


def test_sound_declarations_and_the_generic_options() -> None:
    assert declaration_problems(RecordingDriver.PRINT_OPTIONS) == []
    assert [option.name for option in GENERIC_OPTIONS] == GENERIC
    assert declaration_problems([PrintOption("x", "integer", "X")] * 2) == [
        "option name 'x' is taken"
    ]
    assert [o.name for o in RecordingDriver.print_options()] == [
        *GENERIC,
        "mode",
        "speed",
        "cut",
        "note",
    ]


def test_a_driver_with_unsound_options_is_not_registered() -> None:
    found = discover(("tests.fake_drivers:BadPrintOptionsDriver",))
    assert "bad-options" not in found.drivers
    (error,) = [e for e in found.errors if "BadPrintOptionsDriver" in e]
    assert "option name 'copies' is taken" in error
    assert "choice option 'paper' has no choices" in error


def test_the_form_parses_types_defaults_and_ignores_unknown_names() -> None:
    form = options_form(RecordingDriver.print_options())
    parsed = form.parse({"speed": " 3 ", "cut": "YES", "rotation": "90", "other": "x"})
    assert parsed == {"copies": 1, "mode": "fast", "speed": 3, "cut": True, "rotation": 90}
    assert form.parse({"mode": "fine", "note": "ok"}) == {"copies": 1, "mode": "fine", "note": "ok"}


def test_the_form_describes_each_option_as_drf_and_json_schema() -> None:
    form = options_form(RecordingDriver.print_options())
    metadata = form.metadata()
    assert list(metadata) == [*GENERIC, "mode", "speed", "cut", "note"]
    assert metadata["mode"] == {
        "type": "choice",
        "required": False,
        "read_only": False,
        "label": "Mode",
        "help_text": "Print mode of this job",
        "default": "fast",
        "choices": [
            {"value": "fast", "display_name": "Fast"},
            {"value": "fine", "display_name": "Fine"},
        ],
    }
    assert metadata["copies"]["min_value"] == 1
    assert metadata["copies"]["max_value"] == 1000
    assert metadata["note"]["max_length"] == 8
    schema = form.json_schema()
    assert schema["rotation"]["enum"] == [0, 90, 180, 270]
    assert schema["rotation"]["type"] == "integer"
    assert schema["mode"] == {
        "type": "string",
        "enum": ["fast", "fine"],
        "default": "fast",
        "description": "Print mode of this job",
    }
    assert schema["speed"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 5,
        "description": "Speed of this job",
    }
    assert schema["cut"]["type"] == "boolean"
    assert schema["note"]["maxLength"] == 8


def _recording(client: Client) -> RecordingDriver:
    driver = client.app[REGISTRY].drivers["recording"]
    assert isinstance(driver, RecordingDriver)
    return driver


async def test_a_drivers_options_reach_it_typed_with_the_job(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, name="rec", driver="recording")
    resp = await client.post(
        f"/api/machine/{machine['pk']}/print/",
        params={"speed": "4", "cut": "off", "note": "box 7", "threshold": "90", "darkness": "9"},
        data=label_pdf(),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    assert resp.status == 201, await resp.text()
    await wait_for_job(client, admin, (await resp.json())["pk"], ("complete",))
    # `darkness` is the ZPL driver's: this machine's driver ignores it, as DRF ignores a field.
    assert _recording(client).job_options == [
        {"mode": "fast", "speed": 4, "cut": False, "note": "box 7", "threshold": 90}
    ]


async def test_a_drivers_options_are_validated_with_drf_messages(
    client: Client, admin: Headers
) -> None:
    machine = await create_machine(client, admin, name="rec", driver="recording")
    resp = await client.post(
        f"/api/machine/{machine['pk']}/print/",
        params={
            "mode": "slow",
            "speed": "9",
            "cut": "maybe",
            "note": "much too long",
            "copies": "0",
        },
        data=label_pdf(),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    assert resp.status == 400
    assert await resp.json() == {
        "copies": ["Ensure this value is greater than or equal to 1."],
        "mode": ['"slow" is not a valid choice.'],
        "speed": ["Ensure this value is less than or equal to 5."],
        "cut": ["Must be a valid boolean."],
        "note": ["Ensure this field has no more than 8 characters."],
    }
    resp = await client.post(
        f"/api/machine/{machine['pk']}/print/",
        params={"speed": "fast", "note": "  "},
        data=label_pdf(),
        headers={**admin, "Content-Type": "application/pdf"},
    )
    assert await resp.json() == {
        "speed": ["A valid integer is required."],
        "note": ["This field may not be blank."],
    }
    assert _recording(client).job_options == []


async def test_options_lists_the_machines_print_options(
    client: Client, admin: Headers, viewer: Headers
) -> None:
    recording = await create_machine(client, admin, name="rec", driver="recording")
    virtual = await create_machine(client, admin, name="virtual")
    resp = await client.options(f"/api/machine/{recording['pk']}/print/", headers=admin)
    assert resp.status == 200
    actions = (await resp.json())["actions"]["POST"]
    assert actions == options_form(RecordingDriver.print_options()).metadata()
    resp = await client.options(f"/api/machine/{virtual['pk']}/print/", headers=admin)
    assert list((await resp.json())["actions"]["POST"]) == GENERIC
    # Who may not print sees no form, as DRF shows no action a user may not take.
    resp = await client.options(f"/api/machine/{recording['pk']}/print/", headers=viewer)
    assert resp.status == 200
    assert "actions" not in await resp.json()


async def test_the_openapi_document_lists_every_drivers_own_options(client: Client) -> None:
    resp = await client.get("/api/schema/")
    document = await resp.json()
    post = document["paths"]["/api/machine/{id}/print/"]["post"]
    driver_options = post["x-driver-options"]
    assert driver_options["recording"] == {
        "type": "object",
        "properties": {
            name: schema
            for name, schema in options_form(RecordingDriver.print_options()).json_schema().items()
            if name not in GENERIC
        },
    }
    assert list(driver_options["zpl"]["properties"]) == ["darkness"]
    assert list(driver_options["escpos"]["properties"]) == ["cut"]
    # Drivers without options of their own are left out.
    assert "virtual" not in driver_options
    assert [p["name"] for p in post["parameters"] if p["in"] == "query"] == GENERIC
    form = post["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert list(form) == ["file", *GENERIC]
    drivers = {slug: type(driver) for slug, driver in client.app[REGISTRY].drivers.items()}
    assert document == openapi_document(driver_options_of(drivers))


def test_every_built_in_driver_declares_sound_options() -> None:
    for driver in discover().drivers.values():
        if issubclass(driver, LabelPrinterDriver):
            assert declaration_problems(driver.PRINT_OPTIONS) == [], driver.SLUG
