"""Issue 9 end to end: InvenTree prints on printers behind an agent, on both InvenTree lines.

Each test runs against a real InvenTree (303 and current, `inventree` fixture) with the companion
plugin installed and its background worker running, a real agent daemon (a subprocess) dialling
out to it, and a simulated Zebra on a loopback TCP port. Labels are printed as InvenTree's web UI
prints them (`POST /api/label/print/` with the machine plugin) and checked at the printer, dot by
dot, with the test-side Zebra decoder. Names are unique per test: the servers are shared by
every test worker.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

from tests.central_e2e.agent_side import ZplPrinter, running_agent
from tests.central_e2e.conftest import ITEMS, AccountPool
from tests.central_e2e.inventree_side import InvenTreeApi, Printables, unique, wait_on_server
from tests.central_e2e.loop_thread import LoopThread
from tests.central_e2e.plugin_store import jobs_of_machine
from tests.central_e2e.scene import (
    CONNECTED,
    COPIES,
    NO_MEDIA,
    PRINT_TIMEOUT_S,
    agent_scene,
    agent_setup,
    edge_call,
    expected_size,
    ink_share,
    machine_uuid,
    new_agent_name,
)
from tests.central_e2e.tcp_proxy import TcpProxy
from tests.inventree_servers import InvenTreeServer
from tests.waiting import wait_until_blocking

# A status change at the printer reaches InvenTree: the driver's status poll (1 s here), the
# agent's debounced report (1 s), the request.
STATUS_TIMEOUT_S = 20.0
STATE_POST = r"POST /plugin/inventree-edge/jobs/[^/ ]+/state/"
# Two stock items, two copies each (conftest ITEMS, scene COPIES).
LABELS = ITEMS * COPIES
JOBS_GET = r"GET /plugin/inventree-edge/jobs/(\?[^ ]*)? "


def wait_job_state(server: InvenTreeServer, machine: str, states: tuple[str, ...]) -> Any:
    """The machine's only job, once the plugin has it in one of `states`."""
    found: list[Any] = []

    def reached() -> bool:
        found[:] = jobs_of_machine(server, machine)
        return len(found) == 1 and found[0].state in states

    try:
        wait_on_server(reached, PRINT_TIMEOUT_S, f"the job in state {states}")
    except AssertionError as err:
        raise AssertionError(f"{err}; jobs: {found}") from None
    return found[0]


def test_a_label_printed_in_inventree_comes_out_of_the_zebra_behind_the_agent(
    inventree: InvenTreeServer,
    api: InvenTreeApi,
    accounts: AccountPool,
    printables: Printables,
    zebra: ZplPrinter,
    tmp_path: Path,
) -> None:
    with agent_scene(tmp_path, api, accounts.take(), zebra, printables) as scene:
        # The print dialog of the web UI offers the agent's printers, with their options.
        dialog = api.print_options()["actions"]["POST"]
        assert {"template", "items", "plugin", "machine", "driver_options"} <= set(dialog)
        api.wait_machine(scene.zebra_machine, lambda m: m["status"] == CONNECTED)

        answer = scene.print_on_zebra()

        if inventree.api_version < 326:
            # 303 prints in the request and answers with the finished LabelOutput.
            assert answer["complete"] is True, answer
        else:
            output = api.wait_output_complete(answer)
            assert output["complete"] is True, output
            assert not output.get("errors"), output
        scene.wait_printed(scene.expected_labels())
        job = wait_job_state(inventree, scene.zebra_machine, ("done",))

    # Each item once per format, `^PQ 2` each: items x copies labels, and nothing more.
    assert zebra.printed_count() == len(printables.items) * COPIES
    assert zebra.copies_requested() == [COPIES] * len(printables.items)
    assert (job.printed, job.total) == (LABELS, LABELS)
    labels = zebra.labels()
    width, height = expected_size(printables)
    for label in labels:
        assert abs(label.width - width) <= 8, label.size
        assert abs(label.height - height) <= 8, label.size
        # InvenTree's sample stock label: a QR code and text, so far from blank or black.
        assert 0.03 < ink_share(label) < 0.7
    # One label per stock item: their QR codes differ.
    assert labels[0].tobytes() != labels[1].tobytes()


def test_paper_out_at_the_zebra_shows_no_media_in_inventree_and_clears(
    api: InvenTreeApi,
    accounts: AccountPool,
    printables: Printables,
    zebra: ZplPrinter,
    tmp_path: Path,
) -> None:
    with agent_scene(tmp_path, api, accounts.take(), zebra, printables) as scene:
        api.wait_machine(scene.zebra_machine, lambda m: m["status"] == CONNECTED)

        zebra.set_fault("paper-out")
        shown = api.wait_machine(
            scene.zebra_machine, lambda m: m["status"] == NO_MEDIA, STATUS_TIMEOUT_S
        )
        assert shown["status_text"], shown
        # The virtual printer beside it is not affected.
        assert api.machine(scene.virtual_machine)["status"] == CONNECTED

        zebra.clear_fault("paper-out")
        api.wait_machine(scene.zebra_machine, lambda m: m["status"] == CONNECTED, STATUS_TIMEOUT_S)


def test_a_result_reached_while_inventree_is_unreachable_arrives_when_it_is_back(
    inventree: InvenTreeServer,
    api: InvenTreeApi,
    accounts: AccountPool,
    printables: Printables,
    zebra: ZplPrinter,
    loop: LoopThread,
    tmp_path: Path,
) -> None:
    proxy = TcpProxy("127.0.0.1", _port(inventree.url))
    loop.run(proxy.start())
    with agent_scene(tmp_path, api, accounts.take(), zebra, printables, url=proxy.url) as scene:
        api.wait_machine(scene.zebra_machine, lambda m: m["status"] == CONNECTED)
        # The job waits at the agent until the roll is back.
        zebra.set_fault("paper-out")
        api.wait_machine(scene.zebra_machine, lambda m: m["status"] == NO_MEDIA, STATUS_TIMEOUT_S)
        scene.print_on_zebra()
        wait_job_state(inventree, scene.zebra_machine, ("accepted", "printing"))

        loop.run(proxy.cut())
        zebra.clear_fault("paper-out")
        scene.wait_printed(scene.expected_labels())
        wait_until_blocking(
            lambda: (
                scene.agent.central()["pending"] > 0
                and scene.agent.central()["state"] == "unreachable"
            ),
            STATUS_TIMEOUT_S,
            "the agent holding its report while InvenTree is away",
        )
        assert jobs_of_machine(inventree, scene.zebra_machine)[0].state != "done"

        loop.run(proxy.restore())
        job = wait_job_state(inventree, scene.zebra_machine, ("done",))
        wait_until_blocking(lambda: scene.agent.central()["pending"] == 0, STATUS_TIMEOUT_S)
    assert (job.printed, job.total) == (LABELS, LABELS)
    assert zebra.printed_count() == scene.expected_labels()
    loop.run(proxy.close())


def test_an_agent_killed_after_taking_a_job_prints_it_once_after_its_restart(
    inventree: InvenTreeServer,
    api: InvenTreeApi,
    accounts: AccountPool,
    printables: Printables,
    zebra: ZplPrinter,
    tmp_path: Path,
) -> None:
    setup = agent_setup(api, accounts.take(), zebra, printables)
    data = tmp_path / "agent"
    with running_agent(data, setup) as agent:
        machine = machine_uuid(api, setup.name, setup.zebra_name)
        api.wait_machine(machine, lambda m: m["status"] == CONNECTED)
        zebra.set_fault("paper-out")
        api.wait_machine(machine, lambda m: m["status"] == NO_MEDIA, STATUS_TIMEOUT_S)
        api.print_labels(printables.template, printables.items, machine, COPIES)
        # Stored in the agent's queue (and said so; the agent may already have tried the paper-out
        # printer, `printing`): then killed before anything printed.
        job = wait_job_state(inventree, machine, ("accepted", "printing"))
        assert job.printed == 0
        agent.daemon.proc.send_signal(signal.SIGKILL)
        agent.daemon.proc.wait(10)
    assert zebra.printed_count() == 0

    zebra.clear_fault("paper-out")
    with running_agent(data, setup):
        job = wait_job_state(inventree, machine, ("done",))
    assert (job.printed, job.total) == (LABELS, LABELS)
    assert zebra.printed_count() == len(printables.items) * COPIES
    assert zebra.copies_requested() == [COPIES] * len(printables.items)


def test_a_job_the_server_delivers_again_prints_once(
    inventree: InvenTreeServer,
    api: InvenTreeApi,
    accounts: AccountPool,
    printables: Printables,
    zebra: ZplPrinter,
    loop: LoopThread,
    tmp_path: Path,
) -> None:
    proxy = TcpProxy("127.0.0.1", _port(inventree.url))
    loop.run(proxy.start())
    account = accounts.take()
    with agent_scene(tmp_path, api, account, zebra, printables, url=proxy.url) as scene:
        api.wait_machine(scene.zebra_machine, lambda m: m["status"] == CONNECTED)
        # The agent's `accepted` never reaches the server: the job stays `fetched` there, and
        # every later `jobs/` answer holds it again.
        proxy.block = re.compile(STATE_POST.encode())
        scene.print_on_zebra()
        wait_until_blocking(lambda: proxy.blocked >= 1, PRINT_TIMEOUT_S, "an `accepted` report")
        first_block = proxy.requests_to(STATE_POST)[0]
        wait_until_blocking(
            lambda: len(proxy.requests_to(JOBS_GET, since=first_block)) >= 2,
            PRINT_TIMEOUT_S,
            "two more `jobs/` polls by the agent",
        )
        listed = edge_call(
            inventree.url, account.token, scene.agent.setup.name, "GET", "jobs/"
        ).json()["jobs"]
        assert len(listed) == 1, "the server no longer delivers the job"
        scene.wait_printed(scene.expected_labels())

        proxy.block = None
        job = wait_job_state(inventree, scene.zebra_machine, ("done",))
    assert (job.printed, job.total) == (LABELS, LABELS)
    assert zebra.printed_count() == scene.expected_labels()
    assert zebra.copies_requested() == [COPIES] * len(printables.items)
    loop.run(proxy.close())


def test_a_revoked_token_is_shown_by_the_agent_which_backs_off(
    inventree: InvenTreeServer,
    api: InvenTreeApi,
    accounts: AccountPool,
    printables: Printables,
    zebra: ZplPrinter,
    loop: LoopThread,
    tmp_path: Path,
) -> None:
    proxy = TcpProxy("127.0.0.1", _port(inventree.url))
    loop.run(proxy.start())
    account = accounts.take()
    with agent_scene(tmp_path, api, account, zebra, printables, url=proxy.url) as scene:
        api.revoke_own_token(account.token)
        revoked = time.monotonic()
        wait_until_blocking(
            lambda: scene.agent.central()["state"] == "unauthorized",
            STATUS_TIMEOUT_S,
            "the agent to say its token is refused",
        )
        status = scene.agent.central()
        assert "token" in status["last_error"].lower(), status
        # Polling every second, the agent would ask 6 times in 5 s. Backing off (waits doubling
        # from 0.5-1 s), its 6th request comes 7.5 s or more after the first refusal.
        wait_until_blocking(
            lambda: len(proxy.requests_to("", since=revoked)) >= 6, 90.0, "6 requests"
        )
        times = proxy.requests_to("", since=revoked)[:6]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert times[-1] - times[0] >= 7.0, gaps
    assert gaps[-1] >= 3.5, gaps
    loop.run(proxy.close())


def test_an_agent_whose_user_is_not_in_the_agents_group_is_refused_clearly(
    inventree: InvenTreeServer,
    api: InvenTreeApi,
    accounts: AccountPool,
    printables: Printables,
    zebra: ZplPrinter,
    tmp_path: Path,
) -> None:
    account = accounts.take(in_group=False)
    setup = agent_setup(api, account, zebra, printables)
    with running_agent(tmp_path / "agent", setup) as agent:
        wait_until_blocking(
            lambda: agent.central()["state"] == "forbidden",
            STATUS_TIMEOUT_S,
            "the agent to say it is refused",
        )
        status = agent.central()
    assert "edge-agents" in status["last_error"], status
    answer = edge_call(inventree.url, account.token, setup.name, "POST", "report/", _report([]))
    assert answer.status == 403, answer
    assert answer.json()["code"] == "not_agent", answer
    assert "edge-agents" in answer.json()["detail"]
    # Nothing of this agent appears in InvenTree.
    assert not [m for m in api.machines() if m["name"].startswith(setup.name)]


def test_an_agent_asking_for_another_agents_job_gets_404(
    inventree: InvenTreeServer,
    api: InvenTreeApi,
    accounts: AccountPool,
    printables: Printables,
) -> None:
    owner, other = accounts.take(), accounts.take()
    owner_name, other_name = new_agent_name("agent-a"), new_agent_name("agent-b")
    printer = {"key": unique("printer-key"), "name": "zebra", "driver": "zpl", "status": CONNECTED}
    answer = edge_call(
        inventree.url, owner.token, owner_name, "POST", "report/", _report([printer])
    )
    assert answer.status == 200, answer
    [shown] = answer.json()["printers"]
    other_printer = {**printer, "key": unique("printer-key")}
    answer = edge_call(
        inventree.url, other.token, other_name, "POST", "report/", _report([other_printer])
    )
    assert answer.status == 200, answer

    api.print_labels(printables.template, printables.items[:1], shown["machine"], 1)
    jobs: list[dict[str, Any]] = []

    def listed() -> bool:
        jobs[:] = edge_call(inventree.url, owner.token, owner_name, "GET", "jobs/").json()["jobs"]
        return bool(jobs)

    wait_on_server(listed, PRINT_TIMEOUT_S, "the job on its agent's list")
    job = jobs[0]["id"]

    def as_other(method: str, path: str, body: Any = None) -> Any:
        return edge_call(inventree.url, other.token, other_name, method, path, body)

    assert as_other("GET", "jobs/").json()["jobs"] == []
    for answer in (
        as_other("GET", f"jobs/{job}/documents/0/"),
        as_other("POST", f"jobs/{job}/state/", {"state": "done", "printed": 1, "total": 1}),
    ):
        assert answer.status == 404, answer
        assert answer.json()["code"] == "not_found", answer
    # The owner still gets it: the other agent's attempts changed nothing.
    mine = edge_call(inventree.url, owner.token, owner_name, "GET", f"jobs/{job}/documents/0/")
    assert mine.status == 200, mine.status
    assert mine.body.startswith(b"%PDF")
    assert (
        edge_call(
            inventree.url,
            owner.token,
            owner_name,
            "POST",
            f"jobs/{job}/state/",
            {"state": "cancelled", "printed": 0, "total": 1, "message": "end of test"},
        ).status
        == 200
    )


def _report(printers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"agent": {"version": "e2e", "report_interval": 30}, "printers": printers}


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])
