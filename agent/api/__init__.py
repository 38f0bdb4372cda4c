"""The HTTP API: InvenTree's machine API (v303) plus the agent's own endpoints."""

from __future__ import annotations

from aiohttp import web

from agent.api import (
    central,
    devices,
    health,
    jobs,
    machine_settings,
    machines,
    registry_info,
    root,
    schema,
    users,
)
from agent.api.prometheus import ROUTE as METRICS_ROUTE
from agent.api.prometheus import metrics_view
from agent.api.views import ApiView

# In the order aiohttp tries them; each view's endpoint names its route.
VIEWS: tuple[type[ApiView], ...] = (
    root.InfoView,
    schema.SchemaView,
    root.AllStatusViews,
    root.StatusView,
    users.GetAuthToken,
    users.MeUserDetail,
    users.RoleDetails,
    users.LoginView,
    users.Logout,
    registry_info.MachineTypesList,
    registry_info.MachineDriverList,
    registry_info.RegistryStatus,
    jobs.JobList,
    jobs.JobDetail,
    jobs.PrintView,
    machine_settings.MachineSettingDetail,
    machine_settings.MachineSettingList,
    machines.MachineRestartView,
    machines.MachineDetail,
    machines.MachineList,
    central.CentralStatusView,
    devices.DeviceListView,
    health.HealthView,
)


def setup_routes(app: web.Application, extra: tuple[type[ApiView], ...] = ()) -> None:
    """Register every view for every method (the views answer 405 themselves), then the 404s."""
    for view in (*VIEWS, *extra):
        app.router.add_route("*", view.endpoint.served_at, view.handle)
    app.router.add_route("*", METRICS_ROUTE, metrics_view)
    app.router.add_route("*", "/api/{tail:.*}", root.api_not_found)
    app.router.add_route("*", "/{tail:.*}", root.not_found)
