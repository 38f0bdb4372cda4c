"""The InvenTree plugin class: settings, the agents' URLs, the job tables and the driver."""

from __future__ import annotations

from django.urls import path
from plugin import InvenTreePlugin
from plugin.mixins import AppMixin, SettingsMixin, UrlsMixin

from . import PLUGIN_SLUG, __version__, config

try:
    from plugin.mixins import MachineDriverMixin
except ImportError:
    # InvenTree 303 has no such mixin: it finds drivers by importing them (below).

    class MachineDriverMixin:  # type: ignore[no-redef]
        pass


# Importing the driver registers it on InvenTree 303, which finds every imported driver class.
from .driver import EdgeAgentDriver


class EdgePlugin(AppMixin, MachineDriverMixin, SettingsMixin, UrlsMixin, InvenTreePlugin):
    NAME = "InvenTreeEdge"
    SLUG = PLUGIN_SLUG
    TITLE = "InvenTree Edge"
    DESCRIPTION = "Print on label printers behind InvenTree Edge agents that dial out to InvenTree"
    AUTHOR = "inventree-edge contributors"
    VERSION = __version__
    LICENSE = "MIT"
    MIN_VERSION = "0.17.0"

    SETTINGS = config.SETTINGS

    def get_machine_drivers(self):
        return [EdgeAgentDriver]

    def setup_urls(self):
        from . import views

        return [
            path("report/", views.ReportView.as_view(), name="report"),
            path("jobs/", views.JobsView.as_view(), name="jobs"),
            path(
                "jobs/<str:job_id>/documents/<int:index>/",
                views.DocumentView.as_view(),
                name="document",
            ),
            path("jobs/<str:job_id>/state/", views.StateView.as_view(), name="state"),
        ]
