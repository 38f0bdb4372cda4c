"""The agents' endpoints under /plugin/inventree-edge/ (docs/central-protocol.md).

DRF views: CSRF-exempt for token-authenticated POSTs, and with explicit permission classes
because current InvenTree's defaults expect model or role metadata these views do not have.
InvenTree lets any valid token through, so the plugin authorises agents itself.
"""

from __future__ import annotations

import math
import uuid
from urllib.parse import unquote

from django.http import HttpResponse
from django.utils import timezone
from rest_framework.exceptions import ParseError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from . import PROTOCOL_VERSION, compat, config, mirror

# InvenTree builds the plugin's URLs before it installs the plugin's app: the job tables (and
# the modules using them) are imported inside the views.

PROTOCOL_HEADER = "X-Edge-Protocol"
AGENT_HEADER = "X-Edge-Agent"
STATUS_CODES = (100, 101, 110, 200, 301, 302, 400, 500)
PROPERTY_TYPES = ("str", "bool", "int", "float", "progress")
MAX_REPORT_INTERVAL = 24 * 3600
MAX_PRINTERS = 500


class ProtocolError(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra):
        super().__init__(detail)
        self.status = status
        self.body = {"detail": detail, "code": code, **extra}


def invalid(detail: str) -> ProtocolError:
    return ProtocolError(400, "invalid", detail)


def not_found(detail: str = "No such job for this agent.") -> ProtocolError:
    return ProtocolError(404, "not_found", detail)


class AgentView(APIView):
    permission_classes = [IsAuthenticated]

    def dispatch(self, request, *args, **kwargs):
        response = super().dispatch(request, *args, **kwargs)
        response[PROTOCOL_HEADER] = str(PROTOCOL_VERSION)
        return response

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if not compat.tables_ready():
            raise ProtocolError(
                503,
                "not_ready",
                "The InvenTree Edge plugin has no job tables yet: switch on the global setting "
                "ENABLE_PLUGINS_APP, run 'invoke migrate' and restart InvenTree.",
            )
        from . import jobs

        mirror.ensure_sweeper()
        jobs.housekeeping()
        sent = request.headers.get(PROTOCOL_HEADER, "").strip()
        if sent != str(PROTOCOL_VERSION):
            raise ProtocolError(
                400,
                "protocol",
                f"This server speaks protocol {PROTOCOL_VERSION} "
                f"(header {PROTOCOL_HEADER}: {sent or 'missing'}); update the agent or the plugin.",
                server_protocol=PROTOCOL_VERSION,
            )
        group = config.get("AGENT_GROUP")
        if not request.user.groups.filter(name=group).exists():
            raise ProtocolError(
                403,
                "not_agent",
                f"User {request.user.username} is not in the group '{group}'; "
                "add the agent's user to it in InvenTree.",
            )
        name = unquote(request.headers.get(AGENT_HEADER, "")).strip()
        if not name or len(name) > 200:
            raise invalid(f"Send the agent's name (1-200 characters) in the {AGENT_HEADER} header.")
        self.agent_name = name

    def handle_exception(self, exc):
        if isinstance(exc, ProtocolError):
            return Response(exc.body, status=exc.status)
        if isinstance(exc, ParseError):
            return Response(
                {
                    "detail": f"The body is not valid JSON ({exc.detail}); send a JSON object.",
                    "code": "invalid",
                },
                status=400,
            )
        return super().handle_exception(exc)

    def own_agent(self):
        from .models import EdgeAgent

        agent = EdgeAgent.objects.filter(name=self.agent_name).first()
        if agent is not None and agent.user_id != self.request.user.pk:
            raise ProtocolError(
                403,
                "agent_owned",
                f"The agent name {agent.name} belongs to another InvenTree user; "
                "give this agent another name.",
            )
        return agent

    def own_job(self, job_id: str):
        from .models import EdgeJob

        agent = self.own_agent()
        if agent is None:
            raise not_found()
        try:
            uid = uuid.UUID(job_id)
        except ValueError:
            raise not_found() from None
        job = (
            EdgeJob.objects.select_related("printer").filter(printer__agent=agent, uid=uid).first()
        )
        if job is None:
            raise not_found()
        return job


def _text(entry: dict, field: str, limit: int, where: str, required: bool = False) -> str:
    value = entry.get(field, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        raise invalid(
            f"{where}.{field} must be a text of {'1-' if required else 'at most '}{limit} characters."
        )
    return value


def parse_report(data) -> tuple[dict, list[dict]]:
    if not isinstance(data, dict):
        raise invalid("The body must be a JSON object with 'agent' and 'printers'.")
    agent = data.get("agent", {})
    if not isinstance(agent, dict):
        raise invalid("agent must be an object with version and report_interval.")
    interval = agent.get("report_interval", 30)
    if (
        not isinstance(interval, int)
        or isinstance(interval, bool)
        or not 1 <= interval <= MAX_REPORT_INTERVAL
    ):
        raise invalid(
            f"agent.report_interval must be whole seconds between 1 and {MAX_REPORT_INTERVAL}."
        )
    version = _text(agent, "version", 50, "agent")
    printers = data.get("printers")
    if not isinstance(printers, list) or len(printers) > MAX_PRINTERS:
        raise invalid(f"printers must be a list of at most {MAX_PRINTERS} printers.")
    parsed, keys = [], set()
    for i, entry in enumerate(printers):
        where = f"printers[{i}]"
        if not isinstance(entry, dict):
            raise invalid(f"{where} must be an object.")
        key = _text(entry, "key", 100, where, required=True)
        if key in keys:
            raise invalid(f"{where}.key {key} appears twice.")
        keys.add(key)
        status = entry.get("status", 101)
        if status not in STATUS_CODES or isinstance(status, bool):
            raise invalid(f"{where}.status must be one of {', '.join(map(str, STATUS_CODES))}.")
        properties = entry.get("properties", []) or []
        if not isinstance(properties, list) or len(properties) > 100:
            raise invalid(f"{where}.properties must be a list of at most 100 properties.")
        for j, prop in enumerate(properties):
            if not isinstance(prop, dict) or not isinstance(prop.get("key"), str):
                raise invalid(f"{where}.properties[{j}] must be an object with a key.")
            if prop.get("type", "str") not in PROPERTY_TYPES:
                raise invalid(
                    f"{where}.properties[{j}].type must be one of {', '.join(PROPERTY_TYPES)}."
                )
        errors = entry.get("errors", []) or []
        if (
            not isinstance(errors, list)
            or len(errors) > 50
            or not all(isinstance(e, str) for e in errors)
        ):
            raise invalid(f"{where}.errors must be a list of at most 50 texts.")
        parsed.append(
            {
                "key": key,
                "name": _text(entry, "name", 150, where, required=True),
                "driver": _text(entry, "driver", 100, where),
                "status": status,
                "status_text": _text(entry, "status_text", 500, where),
                "properties": properties,
                "errors": [e[:500] for e in errors],
            }
        )
    return {"version": version, "report_interval": interval}, parsed


class ReportView(AgentView):
    def post(self, request):
        from . import machines
        from .models import EdgeAgent

        meta, printers = parse_report(request.data)
        agent = self.own_agent()
        if agent is None:
            agent, _ = EdgeAgent.objects.get_or_create(
                name=self.agent_name, defaults={"user": request.user}
            )
            if agent.user_id != request.user.pk:
                agent = self.own_agent()  # lost a race with another user: answer agent_owned
        agent.version = meta["version"]
        agent.report_interval = meta["report_interval"]
        agent.last_report = timezone.now()
        agent.save()
        synced = machines.sync(agent, printers)
        # This process shows the new state at once; the other processes' sweepers follow.
        mirror.push_all(agent)
        return Response(
            {
                "agent": agent.name,
                "long_poll_max": self.long_poll_max(),
                "printers": [
                    {
                        "key": p.key,
                        "machine": str(p.machine),
                        "name": machines.machine_name(agent, p),
                    }
                    for p in synced
                ],
            }
        )

    @staticmethod
    def long_poll_max() -> int:
        return config.clamp(config.get("LONG_POLL_MAX"), 0, config.LONG_POLL_CEILING)


class JobsView(AgentView):
    def get(self, request):
        from . import jobs

        raw = request.query_params.get("wait", "0")
        try:
            wait = float(raw)
        except ValueError:
            wait = math.nan
        if not math.isfinite(wait) or wait < 0:
            raise invalid("wait must be a number of seconds, 0 or more.")
        agent = self.own_agent()
        if agent is None:
            return Response({"jobs": []})
        wait = min(wait, ReportView.long_poll_max())
        found = jobs.wait_for_jobs(agent, wait) if wait > 0 else jobs.open_jobs(agent)
        return Response({"jobs": [jobs.serialize(job) for job in found]})


class DocumentView(AgentView):
    def get(self, request, job_id, index):
        from .models import EdgeDocument

        job = self.own_job(job_id)
        document = EdgeDocument.objects.filter(job=job, index=index).first()
        if document is None:
            raise not_found(f"Job {job.uid} has no document {index}.")
        response = HttpResponse(bytes(document.data), content_type="application/pdf")
        response["Content-Length"] = str(document.size)
        return response


class StateView(AgentView):
    def post(self, request, job_id):
        from . import jobs

        job = self.own_job(job_id)
        data = request.data
        if not isinstance(data, dict):
            raise invalid("The body must be a JSON object with state, printed, total and message.")
        state = data.get("state")
        if state not in jobs.REPORTABLE:
            raise invalid(f"state must be one of {', '.join(jobs.REPORTABLE)}.")
        counts = {}
        for field in ("printed", "total"):
            value = data.get(field, 0)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 1_000_000:
                raise invalid(f"{field} must be a whole number from 0 to 1000000.")
            counts[field] = value
        message = data.get("message", "") or ""
        if not isinstance(message, str):
            raise invalid("message must be a text.")
        status, body = jobs.apply_report(job, state, counts["printed"], counts["total"], message)
        return Response(body, status=status)
