"""The companion InvenTree plugin on real InvenTree servers (303 and current), at protocol level.

Each test talks to InvenTree as an agent (docs/central-protocol.md) and as the user who prints
(POST /api/label/print/ as the web UI sends it), and reads what InvenTree shows (/api/machine/,
/api/data-output/, /api/notifications/). Every test uses its own agent name, so tests share a
server without seeing each other's printers or jobs.
"""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.inventree_servers import InvenTreeServer
from tests.plugin import agent_users
from tests.plugin.edge_http import Agent, Answer, printer, request
from tests.waiting import wait_until_blocking

# The driver waits this long in the worker for the agent (plugin setting WAIT_FOR_RESULT).
WAIT_FOR_RESULT_S = 5
# One background worker serves every print, each held up to WAIT_FOR_RESULT_S: generous.
PRINT_TIMEOUT_S = 60.0
NO_MEDIA = 301
DISCONNECTED = 400


@dataclass(frozen=True)
class Site:
    server: InvenTreeServer
    template: int
    parts: tuple[int, int]

    @property
    def head(self) -> bool:
        return self.server.api_version >= 326

    def api(self, method: str, path: str, body: Any = None) -> Answer:
        return request(f"{self.server.url}{path}", method, body, self.server.admin_headers)

    def agent(self, **kwargs: Any) -> Agent:
        return Agent(self.server.url, **kwargs)

    def machine(self, pk: str) -> dict[str, Any]:
        answer = self.api("GET", f"/api/machine/{pk}/")
        assert answer.status == 200, answer.body
        return dict(answer.json())

    def print(self, machine: str, items: list[int], copies: int = 1) -> Answer:
        # What the web UI's print dialog sends (OPTIONS /api/label/print/ on both lines).
        return self.api(
            "POST",
            "/api/label/print/",
            {
                "template": self.template,
                "items": items,
                "plugin": "inventreelabelmachine",
                "machine": machine,
                "driver_options": {"copies": copies},
            },
        )

    def data_output(self, pk: int) -> dict[str, Any]:
        answer = self.api("GET", f"/api/data-output/{pk}/")
        assert answer.status == 200, answer.body
        return dict(answer.json())

    def wait_answered(self, printed: Answer) -> dict[str, Any]:
        """The print dialog's final view of a print: the LabelOutput (303) or DataOutput."""
        assert printed.status == 201, printed.body
        output = printed.json()
        if not self.head:
            return dict(output)
        found: dict[str, Any] = {}

        def finished() -> bool:
            found.update(self.data_output(output["pk"]))
            return bool(found["complete"] or found["errors"])

        wait_until_blocking(finished, PRINT_TIMEOUT_S, "the DataOutput finished")
        return found


def _results(answer: Answer) -> list[dict[str, Any]]:
    body = answer.json()
    return list(body["results"] if isinstance(body, dict) else body)


@pytest.fixture(scope="session")
def site(inventree: InvenTreeServer) -> Site:
    agent_users.create(inventree.folder)
    admin = Site(inventree, 0, (0, 0))
    setting = admin.api(
        "PATCH",
        "/api/plugins/inventree-edge/settings/WAIT_FOR_RESULT/",
        {"value": str(WAIT_FOR_RESULT_S)},
    )
    assert setting.status == 200, setting.body
    templates = _results(admin.api("GET", "/api/label/template/?model_type=part"))
    template = next(t["pk"] for t in templates if t["name"] == "InvenTree Part Label")
    parts = []
    for name in ("Edge label part A", "Edge label part B"):
        search = _results(admin.api("GET", f"/api/part/?search={name.replace(' ', '%20')}"))
        found = [p["pk"] for p in search if p["name"] == name]
        if found:
            parts.append(found[0])
        else:
            made = admin.api("POST", "/api/part/", {"name": name, "description": "label tests"})
            assert made.status == 201, made.body
            parts.append(made.json()["pk"])
    return Site(inventree, template, (parts[0], parts[1]))


def machines_of(answer: Answer) -> dict[str, str]:
    assert answer.status == 200, answer.body
    return {p["key"]: p["machine"] for p in answer.json()["printers"]}


def test_report_creates_renames_and_deactivates_machines_never_deletes(site: Site) -> None:
    agent = site.agent()
    first = agent.report([printer("k1", "Zebra"), printer("k2", "Brother")])
    assert first.json()["agent"] == agent.name
    machine = machines_of(first)
    zebra = site.machine(machine["k1"])
    assert zebra["name"] == f"{agent.name} / Zebra"
    assert zebra["driver"] == "edge-agent"
    assert zebra["active"] is True
    settings = {
        s["key"]: s["value"]
        for s in site.api("GET", f"/api/machine/{machine['k1']}/settings/").json()
    }
    assert settings["AGENT"] == agent.name
    assert settings["PRINTER"] == "k1"

    renamed = agent.report([printer("k1", "Zebra upstairs")])
    assert machines_of(renamed) == {"k1": machine["k1"]}
    assert site.machine(machine["k1"])["name"] == f"{agent.name} / Zebra upstairs"
    gone = site.machine(machine["k2"])
    assert gone["active"] is False

    back = agent.report([printer("k1", "Zebra upstairs"), printer("k2", "Brother")])
    assert machines_of(back)["k2"] == machine["k2"]
    assert site.machine(machine["k2"])["active"] is True


def test_printer_status_text_errors_and_properties_show_in_inventree(site: Site) -> None:
    agent = site.agent()
    reported = agent.report(
        [
            printer(
                "k1",
                "Zebra",
                NO_MEDIA,
                status_text="Out of labels",
                errors=["Head open"],
                properties=[{"key": "Model", "value": "ZD421", "type": "str"}],
            )
        ]
    )
    shown = site.machine(machines_of(reported)["k1"])
    assert shown["status"] == NO_MEDIA
    assert shown["status_text"] == "Out of labels"
    assert shown["machine_errors"] == ["Head open"]
    if site.server.api_version >= 401:
        assert [(p["key"], p["value"]) for p in shown["properties"]] == [("Model", "ZD421")]

    agent.report([printer("k1", "Zebra", 100)])
    shown = site.machine(machines_of(reported)["k1"])
    assert (shown["status"], shown["status_text"], shown["machine_errors"]) == (100, "", [])


def test_a_silent_agent_turns_its_printers_disconnected_saying_since_when(site: Site) -> None:
    agent = site.agent()
    # Silent after three report intervals of 1 s; no request reaches InvenTree after this one.
    machine = machines_of(agent.report([printer("k1", "Zebra")], interval=1))["k1"]
    assert site.machine(machine)["status"] == 100

    wait_until_blocking(
        lambda: site.machine(machine)["status"] == DISCONNECTED, 20, "printer DISCONNECTED"
    )
    text = site.machine(machine)["status_text"]
    assert re.fullmatch(rf"Agent {agent.name} silent since \d\d:\d\d UTC", text), text

    agent.report([printer("k1", "Zebra")], interval=30)
    assert site.machine(machine)["status"] == 100


def test_a_print_becomes_one_job_with_every_label_as_a_pdf(site: Site) -> None:
    agent = site.agent()
    machine = machines_of(agent.report([printer("k1", "Zebra")]))["k1"]
    printed = site.print(machine, list(site.parts), copies=2)
    assert printed.status == 201, printed.body

    jobs: list[dict[str, Any]] = []
    wait_until_blocking(lambda: bool(jobs.extend(agent.jobs(wait=2)) or jobs), PRINT_TIMEOUT_S)
    (job,) = jobs
    assert job["printer"] == "k1"
    assert (job["width_mm"], job["height_mm"], job["copies"]) == (50.0, 20.0, 2)
    assert job["user"] == "admin"
    assert job["template"] == "InvenTree Part Label"
    assert [d["index"] for d in job["documents"]] == [0, 1]
    for document in job["documents"]:
        pdf = agent.call("GET", f"jobs/{job['id']}/documents/{document['index']}/")
        assert pdf.status == 200
        assert pdf.headers["Content-Type"] == "application/pdf"
        assert pdf.body.startswith(b"%PDF-")
        assert len(pdf.body) == document["size"]
    assert agent.call("GET", f"jobs/{job['id']}/documents/2/").status == 404

    # Fetched but not accepted: delivered again; accepted: gone from the list.
    assert [j["id"] for j in agent.jobs()] == [job["id"]]
    assert agent.state(job["id"], "accepted", 0, 4).status == 200
    assert agent.state(job["id"], "printing", 2, 4).status == 200
    assert agent.state(job["id"], "done", 4, 4).status == 200
    answered = site.wait_answered(printed)
    assert answered["complete"] is True
    assert not answered.get("errors")
    assert agent.jobs() == []


def test_state_reports_are_idempotent_and_a_finished_job_refuses_another_end(site: Site) -> None:
    agent = site.agent()
    machine = machines_of(agent.report([printer("k1", "Zebra")]))["k1"]
    site.wait_answered(site.print(machine, [site.parts[0]]))
    (job,) = agent.jobs(wait=5)
    assert agent.state(job["id"], "accepted", 0, 1).status == 200
    done = agent.state(job["id"], "done", 1, 1)
    assert done.status == 200
    assert done.json()["state"] == "done"
    again = agent.state(job["id"], "done", 1, 1)
    assert (again.status, again.json()["state"]) == (200, "done")
    conflict = agent.state(job["id"], "failed", 1, 1, "late")
    assert conflict.status == 409
    assert (conflict.json()["code"], conflict.json()["state"]) == ("conflict", "done")
    bad = agent.state(job["id"], "finished")
    assert (bad.status, bad.json()["code"]) == (400, "invalid")


def test_only_agents_may_call_and_an_agent_sees_only_its_own_jobs(site: Site) -> None:
    owner = site.agent()
    machine = machines_of(owner.report([printer("k1", "Zebra")]))["k1"]
    site.wait_answered(site.print(machine, [site.parts[0]]))
    (job,) = owner.jobs(wait=5)

    outsider = site.agent(user="edge-outsider")
    refused = outsider.call("GET", "jobs/")
    assert (refused.status, refused.json()["code"]) == (403, "not_agent")

    other = site.agent(user="edge-agent-b")
    assert other.jobs() == []
    for answer in (
        other.call("GET", f"jobs/{job['id']}/documents/0/"),
        other.state(job["id"], "done", 1, 1),
    ):
        assert (answer.status, answer.json()["code"]) == (404, "not_found")

    squatter = site.agent(user="edge-agent-b", name=owner.name)
    taken = squatter.report([printer("k9", "Mine")])
    assert (taken.status, taken.json()["code"]) == (403, "agent_owned")

    for protocol in ("2", None):
        old = site.agent(name=owner.name, protocol=protocol).call("GET", "jobs/")
        assert old.status == 400
        assert old.json()["code"] == "protocol"
        assert old.json()["server_protocol"] == 1
        assert old.headers["X-Edge-Protocol"] == "1"


def test_a_request_without_a_valid_token_is_refused_without_a_redirect_to_follow(
    site: Site,
) -> None:
    answer = request(
        f"{site.server.url}/plugin/inventree-edge/jobs/", headers={"X-Edge-Protocol": "1"}
    )
    assert answer.status in (302, 401)


def test_the_long_poll_answers_when_a_job_arrives_and_is_bounded(site: Site) -> None:
    agent = site.agent()
    machine = machines_of(agent.report([printer("k1", "Zebra")]))["k1"]
    started = time.monotonic()
    assert agent.jobs(wait=1) == []
    assert time.monotonic() - started < 10
    site.print(machine, [site.parts[0]])
    deadline = time.monotonic() + PRINT_TIMEOUT_S
    while time.monotonic() < deadline:
        asked = time.monotonic()
        jobs = agent.jobs(wait=20)
        if jobs:
            # Answered when the job arrived, not when the 20 s ran out.
            assert time.monotonic() - asked < 19
            assert len(jobs) == 1
            return
    pytest.fail(f"no job within {PRINT_TIMEOUT_S:g} s")


def _notifications_about(site: Site, text: str) -> list[dict[str, Any]]:
    found = _results(site.api("GET", "/api/notifications/?limit=200&ordering=-creation"))
    return [n for n in found if text in (n.get("message") or "")]


def test_a_failure_after_inventree_answered_reaches_the_user_who_printed(site: Site) -> None:
    agent = site.agent()
    machine = machines_of(agent.report([printer("k1", "Zebra")]))["k1"]
    printed = site.print(machine, [site.parts[0]])
    answered = site.wait_answered(printed)
    assert answered["complete"] is True
    (job,) = agent.jobs(wait=5)
    assert agent.state(job["id"], "accepted", 0, 1).status == 200
    message = f"Out of paper {uuid.uuid4().hex[:6]}"
    assert agent.state(job["id"], "failed", 0, 1, message).status == 200

    (note,) = _notifications_about(site, message)
    assert note["name"] == "Label printing failed"
    assert f"{agent.name} / Zebra" in note["message"]
    if site.head:
        errors = site.data_output(printed.json()["pk"])["errors"]
        assert message in errors["error"]


def test_current_inventree_shows_the_agents_failure_in_the_print_dialog(site: Site) -> None:
    if not site.head:
        pytest.skip("InvenTree 303 answers the print before the agent has the job")
    agent = site.agent()
    machine = machines_of(agent.report([printer("k1", "Zebra")]))["k1"]
    printed = site.print(machine, [site.parts[0]])
    jobs: list[dict[str, Any]] = []
    wait_until_blocking(lambda: bool(jobs.extend(agent.jobs(wait=2)) or jobs), PRINT_TIMEOUT_S)
    (job,) = jobs
    message = f"Paper jam {uuid.uuid4().hex[:6]}"
    assert agent.state(job["id"], "failed", 0, 1, message).status == 200
    answered = site.wait_answered(printed)
    assert message in answered["errors"]["error"]
    assert _notifications_about(site, message) == []


def test_printing_on_a_silent_agent_is_refused_saying_since_when(site: Site) -> None:
    agent = site.agent()
    machine = machines_of(agent.report([printer("k1", "Zebra")], interval=1))["k1"]
    wait_until_blocking(lambda: site.machine(machine)["status"] == DISCONNECTED, 20)

    printed = site.print(machine, [site.parts[0]])
    expected = rf"agent {agent.name} is offline since \d\d:\d\d UTC"
    if site.head:
        errors = site.wait_answered(printed)["errors"]
        assert re.fullmatch(expected, errors["error"]), errors
    else:
        assert printed.status == 400
        assert re.fullmatch(expected, printed.json()["non_field_errors"][-1])
    assert agent.jobs() == []


def _age_job(site: Site, job_id: str, hours: int) -> None:
    """Make a job `hours` older and run the plugin's housekeeping, in the server's own shell."""
    script = (
        "from datetime import timedelta\n"
        "from inventree_edge_plugin import jobs\n"
        "from inventree_edge_plugin.models import EdgeJob\n"
        f"job = EdgeJob.objects.get(uid={job_id!r})\n"
        f"EdgeJob.objects.filter(pk=job.pk).update(created=job.created - timedelta(hours={hours}))\n"
        "jobs.housekeeping(force=True)\n"
        "print('aged', EdgeJob.objects.get(pk=job.pk).state)\n"
    )
    done = subprocess.run(  # noqa: S603 - the server's own manage wrapper
        [str(site.server.folder / "manage"), "shell", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "aged expired" in done.stdout, done.stderr[-2000:]


def test_a_job_no_agent_accepts_in_time_fails_and_its_user_is_notified(site: Site) -> None:
    agent = site.agent()
    machine = machines_of(agent.report([printer("k1", "Zebra")]))["k1"]
    printed = site.print(machine, [site.parts[0]])
    assert site.wait_answered(printed)["complete"] is True
    (job,) = agent.jobs(wait=5)

    _age_job(site, job["id"], hours=25)  # JOB_EXPIRY_HOURS is 24

    assert agent.jobs() == []
    expected = f"No agent accepted the job for {agent.name} / Zebra in time"
    assert len(_notifications_about(site, expected)) == 1
    if site.head:
        assert expected in site.data_output(printed.json()["pk"])["errors"]["error"]
    # The agent printed it after all: its late report is recorded.
    late = agent.state(job["id"], "done", 1, 1)
    assert (late.status, late.json()["state"]) == (200, "done")
