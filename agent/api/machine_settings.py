"""`/api/machine/{pk}/settings/`: a machine's settings, and one setting to read or change.

Reading never writes: an unsaved setting shows its default with `pk: null` (InvenTree 303 creates
the row on read; the agent deliberately does not).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.api.declare import (
    UUID,
    Answer,
    Endpoint,
    FormFields,
    ListOf,
    Operation,
    Patched,
    links,
    path_parameter,
)
from agent.api.errors import NotFound, ValidationFailed, drf_json
from agent.api.fields import clean_input, expect_object
from agent.api.machine_models import MachineSetting
from agent.api.machines import MACHINE_ID
from agent.api.views import ApiView
from agent.appkeys import REGISTRY
from agent.machine import Machine
from agent.setting_values import (
    SettingInvalid,
    api_url_of,
    choices_of,
    clean_value,
    default_string,
    display_value,
    setting_type,
)
from drivers.base import ConfigType, SettingDef

_SCOPE_NAME = {"M": "MACHINE", "D": "DRIVER"}


def setting_json(machine: Machine, config_type: ConfigType, key: str) -> dict[str, Any]:
    """InvenTree's MachineSettingSerializer representation (value as a string, v303)."""
    definition: SettingDef = machine.definitions(config_type).get(key, {})
    stored = machine.settings.get((config_type, key))
    return {
        "pk": stored.pk if stored is not None else None,
        "key": key,
        "value": display_value(definition, stored.value if stored is not None else None),
        "name": definition.get("name", ""),
        "description": definition.get("description", ""),
        "type": setting_type(definition),
        "choices": choices_of(definition),
        "model_name": definition.get("model") or None,
        "api_url": api_url_of(definition),
        "typ": "machine_config",
        "required": bool(definition.get("required", False)),
        "config_type": config_type,
    }


def ordered_keys(machine: Machine, config_type: ConfigType) -> list[str]:
    """Defined keys in definition order, then stored keys no longer defined."""
    defined = list(machine.definitions(config_type))
    stale = sorted(
        (stored.pk, key)
        for (scope, key), stored in machine.settings.items()
        if scope == config_type and key not in machine.definitions(config_type)
    )
    return defined + [key for _pk, key in stale]


def _registered_machine(view: ApiView) -> Machine:
    pk = view.request.match_info["pk"]
    machine = view.request.app[REGISTRY].get(pk)
    if machine is None or not machine.registered:
        raise NotFound(f"Machine '{pk}' not found")
    return machine


# What the first setting of a listing feeds.
_FIRST_SETTING = links(
    {
        "id": "$request.path.id",
        "config_type": "$response.body#/0/config_type",
        "key": "$response.body#/0/key",
    },
    *("machine_settings_retrieve", "machine_settings_update"),
    "machine_settings_partial_update",
)
_DETAIL_TEXT = (
    "Detail endpoint for a machine-specific setting.\n\n"
    "- GET: Get machine setting detail\n- PUT: Update machine setting\n"
    "- PATCH: Update machine setting\n\n"
    "(Note that these cannot be created or deleted via API; reading an unsaved setting "
    "answers its default with `pk: null`)"
)


class MachineSettingList(ApiView):
    """Return all settings for a machine config."""

    endpoint = Endpoint(
        "/api/machine/{id}/settings/",
        route=f"/api/machine/{{pk:{UUID}}}/settings/",
        name="Machine Setting List",
        description="Return all settings for a machine config.",
        parameters=(MACHINE_ID,),
        operations=(
            Operation(
                "GET",
                "machine_settings_list",
                "Return all settings for a machine config: machine-type (`M`) settings first, "
                "then driver (`D`) settings, each in definition order.",
                answers=(Answer(200, ListOf(MachineSetting), links=_FIRST_SETTING),),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """Machine-type settings first, then driver settings."""
        machine = _registered_machine(self)
        scopes: tuple[ConfigType, ConfigType] = ("M", "D")
        return drf_json(
            [
                setting_json(machine, scope, key)
                for scope in scopes
                for key in ordered_keys(machine, scope)
            ]
        )


class MachineSettingDetail(ApiView):
    """Detail endpoint for a machine-specific setting."""

    permission = "model"
    endpoint = Endpoint(
        "/api/machine/{id}/settings/{config_type}/{key}/",
        # InvenTree's pattern is unanchored after the key: `.../settings/M/KEY/anything` too.
        route=f"/api/machine/{{pk:{UUID}}}/settings/{{config_type:[MD]}}/{{key:\\w+}}/{{tail:.*}}",
        name="Machine Setting Detail",
        description=(
            "Detail endpoint for a machine-specific setting.\n\n"
            "- GET: Get machine setting detail\n"
            "- PUT: Update machine setting\n"
            "- PATCH: Update machine setting\n\n"
            "(Note that these cannot be created or deleted via API)"
        ),
        parameters=(
            path_parameter("config_type", {"type": "string", "enum": ["M", "D"]}),
            MACHINE_ID,
            path_parameter("key", {"type": "string", "pattern": r"^\w+$"}, "Case-insensitive."),
        ),
        fields=FormFields(),
        operations=(
            Operation(
                "GET",
                "machine_settings_retrieve",
                _DETAIL_TEXT,
                answers=(Answer(200, MachineSetting),),
            ),
            Operation(
                "PUT",
                "machine_settings_update",
                _DETAIL_TEXT,
                request=MachineSetting,
                answers=(Answer(200, MachineSetting),),
            ),
            Operation(
                "PATCH",
                "machine_settings_partial_update",
                _DETAIL_TEXT,
                request=Patched(MachineSetting),
                answers=(Answer(200, MachineSetting),),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """One setting, saved or default."""
        machine, config_type, key = self._target()
        return drf_json(setting_json(machine, config_type, key))

    async def put(self) -> web.StreamResponse:
        """Change the value; `value` is required."""
        return await self._update(partial=False)

    async def patch(self) -> web.StreamResponse:
        """Change the value."""
        return await self._update(partial=True)

    def object_exists(self) -> bool:
        """OPTIONS describes PUT only for a setting that exists."""
        return self._find() is not None

    async def _update(self, *, partial: bool) -> web.StreamResponse:
        machine, config_type, key = self._target()
        data = clean_input(expect_object((await self.read_data()).value))
        definition = machine.definitions(config_type)[key]
        if "value" not in data:
            if not partial:
                raise ValidationFailed({"value": ["This field is required."]})
            stored = machine.settings.get((config_type, key))
            value = stored.value if stored is not None else default_string(definition)
        else:
            try:
                value = clean_value(definition, _as_text(data["value"]))
            except SettingInvalid as err:
                raise ValidationFailed({err.field: [err.message]}) from err
        await self.request.app[REGISTRY].save_setting(machine, config_type, key, value)
        return drf_json(setting_json(machine, config_type, key))

    def _find(self) -> tuple[Machine, ConfigType, str] | None:
        try:
            return self._target()
        except NotFound:
            return None

    def _target(self) -> tuple[Machine, ConfigType, str]:
        machine = _registered_machine(self)
        config_type: ConfigType = "M" if self.request.match_info["config_type"] == "M" else "D"
        key = self.request.match_info["key"].upper()
        if key not in machine.definitions(config_type):
            raise NotFound(
                f"Machine '{machine.name}' has no {_SCOPE_NAME[config_type]} setting matching '{key}'"
            )
        return machine, config_type, key


def _as_text(value: Any) -> str:
    """DRF's CharField on `value`: null becomes '', anything else its Python string."""
    return "" if value is None else str(value)
