"""`GET /api/` (server information), the generic status codes, and the catch-all 404."""

from __future__ import annotations

from typing import Annotated, Any

from aiohttp import web

from agent import __version__
from agent.api.declare import (
    Answer,
    ApiModel,
    Doc,
    Endpoint,
    EnumComponent,
    Operation,
    RawComponent,
    path_parameter,
    ref,
)
from agent.api.errors import ParseError, django_json, drf_json
from agent.api.views import ApiView, identify
from agent.appkeys import DATABASE, REGISTRY, SETTINGS
from drivers.base import MachineStatus

API_VERSION = 303
# The InvenTree version whose API this agent speaks (its `version` field).
INVENTREE_VERSION = "0.18.0 dev"
# InvenTree 303's locale choices, as its export lists them.
# fmt: off
LOCALES = (
    "ar", "bg", "cs", "da", "de", "el", "en", "es", "es-mx", "et", "fa", "fi", "fr", "he", "hi",
    "hu", "it", "ja", "ko", "lt", "lv", "nl", "no", "pl", "pt", "pt-br", "ro", "ru", "sk", "sl",
    "sr", "sv", "th", "tr", "uk", "vi", "zh-hans", "zh-hant",
)
# fmt: on
DEFAULT_LOCALE = EnumComponent("DefaultLocaleEnum", {code: code for code in LOCALES})
_READ_ONLY = Doc(read_only=True)
_STAFF_ONLY = Doc(
    description="Only for staff users; null otherwise (InvenTree answers null too).",
    read_only=True,
)


class AgentInfo(ApiModel):
    """The agent answering (not in InvenTree): its name and version."""

    inline = True

    name: str
    version: str


class InfoApi(ApiModel):
    """InvenTree server information - some information might be blanked if called without elevated credentials."""

    server: Annotated[str, _READ_ONLY]
    version: Annotated[str, _READ_ONLY]
    instance: Annotated[str, _READ_ONLY]
    apiVersion: Annotated[int, _READ_ONLY]
    worker_running: Annotated[bool, _READ_ONLY]
    worker_count: Annotated[int, _READ_ONLY]
    worker_pending_tasks: Annotated[int, _READ_ONLY]
    plugins_enabled: Annotated[bool, _READ_ONLY]
    plugins_install_disabled: Annotated[bool, _READ_ONLY]
    active_plugins: Annotated[
        Any,
        Doc(description="A list of `{name, slug, version}`, or false.", read_only=True),
    ]
    email_configured: Annotated[bool, _READ_ONLY]
    debug_mode: Annotated[bool, _READ_ONLY]
    docker_mode: Annotated[bool, _READ_ONLY]
    default_locale: Annotated[str, Doc(enum=DEFAULT_LOCALE, read_only=True)]
    system_health: Annotated[bool | None, _STAFF_ONLY]
    database: Annotated[str | None, _STAFF_ONLY]
    platform: Annotated[str | None, _STAFF_ONLY]
    installer: Annotated[str | None, _STAFF_ONLY]
    target: Annotated[str | None, _STAFF_ONLY]
    django_admin: Annotated[str | None, _STAFF_ONLY]
    agent: Annotated[AgentInfo, _READ_ONLY]


class GenericStateValue(ApiModel):
    """API serializer for generic state information."""

    key: int
    logical_key: str = ""
    name: str
    label: str
    color: str = ""
    custom: bool = False


class GenericStateClass(ApiModel):
    """API serializer for generic state class information."""

    status_class: Annotated[str, Doc(read_only=True, title="Class")]
    values: dict[str, GenericStateValue]


GENERIC_STATUS_MAP = RawComponent(
    "GenericStatusMap",
    {
        "type": "object",
        "description": "Every status class the agent knows, keyed by class name.",
        "additionalProperties": ref("GenericStateClass"),
    },
    requires=(GenericStateClass,),
)


class InfoView(ApiView):
    """Serve current server information."""

    allow_anonymous = True
    endpoint = Endpoint(
        "/api/",
        name="Info",
        description="Serve current server information.",
        operations=(
            Operation(
                "GET",
                "root_retrieve",
                "Serve current server information.",
                tag=None,
                answers=(Answer(200, InfoApi, "InvenTree server information"),),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """InvenTree's server information; staff-only fields are null for others."""
        settings = self.request.app[SETTINGS]
        identity = await identify(self.request)
        staff = identity is not None and (identity.user.is_staff or identity.user.is_superuser)
        info: dict[str, Any] = {
            "server": "InvenTree",
            "version": INVENTREE_VERSION,
            "instance": settings.instance.name,
            "apiVersion": API_VERSION,
            "worker_running": True,
            "worker_count": 1,
            "worker_pending_tasks": 0,
            "plugins_enabled": False,
            "plugins_install_disabled": True,
            "active_plugins": [],
            "email_configured": False,
            "debug_mode": False,
            "docker_mode": False,
            "default_locale": "en",
            "system_health": self.request.app[DATABASE].fault is None if staff else None,
            "database": "sqlite3" if staff else None,
            "platform": None,
            "installer": None,
            "target": None,
            "django_admin": None,
            "agent": {"name": "inventree-edge", "version": __version__},
        }
        return django_json(info)


def status_class_json(status_class: type[MachineStatus]) -> dict[str, Any]:
    """One status class as InvenTree's generic status API lists it."""
    return {
        "status_class": status_class.__name__,
        "values": {
            member.name: {
                "key": member.value,
                "name": member.name,
                "label": member.label,
                "color": member.color,
            }
            for member in status_class
        },
    }


def _status_classes(request: web.Request) -> dict[str, type[MachineStatus]]:
    registry = request.app[REGISTRY]
    classes: dict[str, type[MachineStatus]] = {"MachineStatus": MachineStatus}
    for machine_type in registry.machine_types.values():
        classes[machine_type.MACHINE_STATUS.__name__] = machine_type.MACHINE_STATUS
    return classes


class AllStatusViews(ApiView):
    """Perform a GET request to learn information about status codes."""

    endpoint = Endpoint(
        "/api/generic/status/",
        name="All Status Views",
        description="Perform a GET request to learn information about status codes.",
        operations=(
            Operation(
                "GET",
                "generic_status_retrieve",
                "Perform a GET request to learn information about status codes.",
                tag="generic",
                answers=(Answer(200, GENERIC_STATUS_MAP),),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """Every status class, keyed by class name."""
        return drf_json(
            {name: status_class_json(cls) for name, cls in _status_classes(self.request).items()}
        )


class StatusView(ApiView):
    """Retrieve information about a specific status code."""

    endpoint = Endpoint(
        "/api/generic/status/{statusmodel}/",
        name="Status",
        description="Retrieve information about a specific status code",
        parameters=(path_parameter("statusmodel", {"type": "string", "pattern": r"^\w+$"}),),
        operations=(
            Operation(
                "GET",
                "generic_status_retrieve_2",
                "Retrieve information about a specific status code; an unknown class is a 400.",
                tag="generic",
                answers=(Answer(200, GenericStateClass),),
                errors=(400,),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """One status class; an unknown name is a 400 (InvenTree 303 answers 500 for every name)."""
        wanted = self.request.match_info["statusmodel"]
        status_class = _status_classes(self.request).get(wanted)
        if status_class is None:
            raise ParseError(f"Status class '{wanted}' not found")
        return drf_json(status_class_json(status_class))


async def api_not_found(request: web.Request) -> web.StreamResponse:
    """Any other `/api/...` path, with any method, needs no authentication."""
    return django_json({"detail": "API endpoint not found", "url": str(request.url)}, status=404)


async def not_found(request: web.Request) -> web.StreamResponse:
    """Outside `/api/` the agent serves nothing."""
    return drf_json({"detail": "Not found."}, status=404)
