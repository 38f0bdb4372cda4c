"""The virtual printer's output: one folder per machine, whatever the machines are called."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from agent.appkeys import SETTINGS
from tests.conftest import Headers, create_machine, label_pdf, wait_for_job

Client = TestClient[Any, Any]


async def _print_one(client: Client, headers: Headers, machine: dict[str, Any]) -> str:
    resp = await client.post(
        f"/api/machine/{machine['pk']}/print/",
        data=label_pdf(1),
        headers={**headers, "Content-Type": "application/pdf"},
    )
    assert resp.status == 201, await resp.text()
    pk: str = (await resp.json())["pk"]
    await wait_for_job(client, headers, pk, ("complete",))
    return pk


async def test_names_that_differ_only_in_slashes_underscores_or_spaces_print_apart(
    client: Client, admin: Headers
) -> None:
    names = ["Shelf/A", "Shelf_A", "Shelf A", "Shelf  A", "Shelf_A_"]
    jobs: dict[str, str] = {}
    for name in names:
        machine = await create_machine(client, admin, name=name)
        jobs[machine["pk"]] = await _print_one(client, admin, machine)
    _check_one_folder_per_machine(client.app[SETTINGS].storage.path / "virtual", jobs)


def _check_one_folder_per_machine(root: Path, jobs: dict[str, str]) -> None:
    folders = sorted(root.iterdir())
    assert len(folders) == len(jobs)
    for folder in folders:
        # Each folder holds one machine's labels, and its name says which machine (pk last).
        machine_pk = next(pk for pk in jobs if folder.name.endswith(pk))
        job = jobs[machine_pk]
        assert (folder / "printed.log").read_text() == f"{job} 1\n"
        assert sorted(p.name for p in folder.glob("*.png")) == [f"{job}-1.png"]
        assert folder.name.startswith("Shelf_A")
