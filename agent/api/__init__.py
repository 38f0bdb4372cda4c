"""The HTTP API: InvenTree's machine API (v303) plus the agent's own endpoints."""

from __future__ import annotations

from aiohttp import web

from agent.api import jobs, machine_settings, machines, registry_info, root, schema, users
from agent.api.uuids import UUID
from agent.api.views import ApiView

ROUTES: tuple[tuple[str, type[ApiView]], ...] = (
    ("/api/", root.InfoView),
    ("/api/schema/", schema.SchemaView),
    ("/api/generic/status/", root.AllStatusViews),
    ("/api/generic/status/{statusmodel}/", root.StatusView),
    ("/api/user/token/", users.GetAuthToken),
    ("/api/user/me/", users.MeUserDetail),
    ("/api/user/roles/", users.RoleDetails),
    ("/api/auth/login/", users.Login),
    ("/api/auth/logout/", users.Logout),
    ("/api/machine/types/", registry_info.MachineTypesList),
    ("/api/machine/drivers/", registry_info.MachineDriverList),
    ("/api/machine/status/", registry_info.RegistryStatus),
    ("/api/machine/jobs/", jobs.JobList),
    (f"/api/machine/jobs/{{job:{UUID}}}/", jobs.JobDetail),
    (f"/api/machine/{{pk:{UUID}}}/print/", jobs.PrintView),
    # InvenTree's pattern is unanchored after the key: `.../settings/M/KEY/anything` matches too.
    (
        f"/api/machine/{{pk:{UUID}}}/settings/{{config_type:[MD]}}/{{key:\\w+}}/{{tail:.*}}",
        machine_settings.MachineSettingDetail,
    ),
    (f"/api/machine/{{pk:{UUID}}}/settings/", machine_settings.MachineSettingList),
    (f"/api/machine/{{pk:{UUID}}}/restart/", machines.MachineRestart),
    (f"/api/machine/{{pk:{UUID}}}/", machines.MachineDetail),
    ("/api/machine/", machines.MachineList),
)


def setup_routes(app: web.Application, extra: tuple[tuple[str, type[ApiView]], ...] = ()) -> None:
    """Register every view for every method (the views answer 405 themselves), then the 404s."""
    for path, view in (*ROUTES, *extra):
        app.router.add_route("*", path, view.handle)
    app.router.add_route("*", "/api/{tail:.*}", root.api_not_found)
    app.router.add_route("*", "/{tail:.*}", root.not_found)
