"""The bodies of the machine and setting endpoints.

InvenTree 303's MachineConfig and MachineSetting serializers as the agent answers them (with
`properties`, and unsaved settings).
"""

from __future__ import annotations

import datetime
import uuid
from typing import Annotated, Literal

from pydantic import Field

from agent.api.declare import ApiModel, Doc, EnumComponent
from drivers.base import LabelPrinterStatus

NAME_MAX_LENGTH = 255
# InvenTree's column length of `machine_type` and `driver`.
SLUG_MAX_LENGTH = 255
CONFIG_TYPE = EnumComponent("ConfigTypeEnum", {"M": "Machine", "D": "Driver"})


def status_codes_text() -> str:
    """The label printer status codes, for descriptions."""
    codes = ", ".join(f"{member.value} {member.name}" for member in LabelPrinterStatus)
    return (
        f"`LabelPrinterStatus` codes: {codes}. 200 WARNING and 500 ERROR are InvenTree v401 "
        "additions the agent uses; ranges: 1xx fine, 2xx warning, 3xx machine problem, "
        "4xx driver problem (e.g. cannot connect), 5xx unknown."
    )


def method_field(what: str, more: str = "") -> Doc:
    """A value InvenTree's serializer computes (a `SerializerMethodField`): read-only."""
    text = f"Serializer method for the {what} field. {more}".strip()
    return Doc(description=text, read_only=True, method=True)


class MachineProperty(ApiModel):
    """A read-only fact about a machine; `max_progress` is set for `progress` values only."""

    key: str
    value: str | float | bool
    group: str
    type: Literal["str", "bool", "progress", "int", "float"]
    max_progress: int | None


class MachineConfig(ApiModel):
    """Serializer for a MachineConfig."""

    pk: Annotated[uuid.UUID, Doc(read_only=True, title="Id")]
    name: Annotated[str, Field(min_length=1, max_length=NAME_MAX_LENGTH), Doc("Name of machine")]
    machine_type: Annotated[
        str,
        Doc("Type of machine", read_only=True, label="Machine Type", max_length=SLUG_MAX_LENGTH),
    ]
    driver: Annotated[
        str, Doc("Driver used for the machine", read_only=True, max_length=SLUG_MAX_LENGTH)
    ]
    initialized: Annotated[bool, method_field("initialized")]
    active: Annotated[bool, Doc("Machines can be disabled")] = True
    status: Annotated[
        int,
        method_field(
            "status", f"-1 when the machine has no runtime instance. {status_codes_text()}"
        ),
    ]
    status_model: Annotated[str | None, method_field("status model")]
    status_text: Annotated[str, method_field("status text")]
    machine_errors: Annotated[list[str], method_field("errors")]
    is_driver_available: Annotated[bool, method_field("is_driver_available")]
    restart_required: Annotated[bool, method_field("restart_required")]
    properties: Annotated[
        list[MachineProperty],
        Doc(description="Facts reported by the driver (InvenTree v401).", read_only=True),
    ]
    status_read_at: Annotated[
        datetime.datetime | None,
        Doc(
            description="When the status was last read from the printer (kept across restarts "
            "of the agent); null if never.",
            read_only=True,
        ),
    ]


class MachineConfigCreate(MachineConfig):
    """Serializer for creating a MachineConfig."""

    machine_type: Annotated[
        str,
        Field(max_length=SLUG_MAX_LENGTH),
        Doc(
            "Type of machine",
            description="Type of machine (any string; an unknown one is a registry error)",
            label="Machine Type",
        ),
    ]
    driver: Annotated[
        str,
        Field(max_length=SLUG_MAX_LENGTH),
        Doc(
            "Driver used for the machine",
            description="Driver used for the machine (any string; an unknown one is an error)",
        ),
    ]


class MachineRestart(ApiModel):
    """Serializer for the machine restart response."""

    ok: bool


class SettingChoice(ApiModel):
    """A choice."""

    inline = True

    value: str
    display_name: str


class MachineSetting(ApiModel):
    """Serializer for the MachineSetting model."""

    pk: Annotated[
        int | None,
        Doc(
            description="null while the setting is not saved: reads never write.",
            title="ID",
            read_only=True,
        ),
    ]
    key: Annotated[str, Doc("Settings key", description="", read_only=True, max_length=50)]
    value: Annotated[
        str | None,
        Doc(
            "Settings value",
            description="Always a string in answers (`True`/`False`, `5`); `***` when protected.",
            max_length=2000,
            drf_type="field",
        ),
    ]
    name: Annotated[str, Doc(read_only=True)]
    description: Annotated[str, Doc(read_only=True)]
    type: Annotated[Literal["boolean", "integer", "related field", "string"], Doc(read_only=True)]
    choices: Annotated[
        list[SettingChoice],
        Doc(
            description="Returns the choices available for a given item.",
            read_only=True,
            method=True,
        ),
    ]
    model_name: Annotated[str | None, Doc(read_only=True)]
    api_url: Annotated[str | None, Doc(read_only=True)]
    typ: Annotated[Literal["machine_config"], Doc(read_only=True)]
    required: Annotated[bool, Doc(read_only=True)]
    config_type: Annotated[str, Doc(enum=CONFIG_TYPE, read_only=True, max_length=1)]
