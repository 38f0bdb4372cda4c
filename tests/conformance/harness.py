"""A family's printer on the agent: the simulator behind it, its labels, and API shortcuts."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient
from PIL import Image, ImageChops, ImageDraw

from agent.appkeys import POLLER, REGISTRY
from agent.render import render_document
from drivers.base import LabelPrinterDriver, RenderOptions
from drivers.sim.base import Simulator
from tests import waiting
from tests.conformance.entry import Entry, LabelSize
from tests.conftest import Headers, create_machine, wait_for_job
from tests.simulator_tap import Tap

Client = TestClient[Any, Any]
# Every condition the suite waits for is reached in milliseconds; this only bounds a failure.
DEADLINE_S = 10.0


def label_images(label: LabelSize, pages: int) -> list[Image.Image]:
    """Distinct pure black-and-white labels: a frame, and a bar whose place depends on the page."""
    width, height = label.width_dots, label.height_dots
    step = max(1, (width - 60) // max(pages, 1))
    images = []
    for index in range(pages):
        image = Image.new("L", (width, height), 255)
        draw = ImageDraw.Draw(image)
        left = 10 + index * step
        draw.rectangle((left, 10, left + 20 + index * 10, height - 20), fill=0)
        draw.rectangle((0, 0, width - 1, height - 1), outline=0)
        images.append(image)
    return images


def label_pdf(label: LabelSize, pages: int) -> bytes:
    """The labels as one PDF, a page per label, at the printer's resolution."""
    images = label_images(label, pages)
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", resolution=label.dpi, save_all=True, append_images=images[1:])
    return buffer.getvalue()


def same(image: Image.Image, page: Image.Image) -> bool:
    """The same size and the same pixels."""
    return image.size == page.size and ImageChops.difference(image, page).getbbox() is None


def all_same(images: Iterable[Image.Image], pages: Iterable[Image.Image]) -> bool:
    """As many images as pages, each with the pixels of its page."""
    images, pages = list(images), list(pages)
    return len(images) == len(pages) and all(map(same, images, pages))


async def wait_until(check: Callable[[], Any], what: str) -> Any:
    """Await `check()` (a coroutine function) until it returns something true, within the deadline."""
    result: Any = None

    async def done() -> bool:
        nonlocal result
        result = await check()
        return bool(result)

    await waiting.wait_until(done, DEADLINE_S, what)
    return result


@dataclass
class Printer:
    """A machine of one family on the agent, and the simulator behind it."""

    entry: Entry
    pk: str
    sim: Simulator
    tap: Tap
    client: Client
    headers: Headers

    def machine(self) -> Any:
        return self.client.app[REGISTRY].get(self.pk)

    def rendered_pages(self, pages: int) -> list[Image.Image]:
        """The suite's PDF rendered as the queue renders it for this machine."""
        machine = self.machine()
        driver = machine.driver
        assert isinstance(driver, LabelPrinterDriver)
        rendered = render_document(
            label_pdf(self.entry.label, pages),
            "application/pdf",
            driver.page_format(machine),
            RenderOptions(),
        )
        # The page is exactly the document: black stays black, white stays white, dot for dot.
        sources = [image.convert("1") for image in label_images(self.entry.label, pages)]
        assert all_same(rendered.pages, sources), "the label size does not match page_format"
        return list(rendered.pages)

    async def print_pdf(self, pages: int, copies: int) -> dict[str, Any]:
        """POST the suite's PDF of `pages` labels, `copies` times; the job as created (201)."""
        resp = await self.client.post(
            f"/api/machine/{self.pk}/print/?copies={copies}",
            data=label_pdf(self.entry.label, pages),
            headers={**self.headers, "Content-Type": "application/pdf"},
        )
        assert resp.status == 201, await resp.text()
        job: dict[str, Any] = await resp.json()
        assert (job["pages"], job["copies"]) == (pages, copies)
        return job

    async def finished(self, job: dict[str, Any]) -> dict[str, Any]:
        """The job once it is complete, failed or cancelled."""
        return await wait_for_job(
            self.client, self.headers, job["pk"], ("complete", "failed", "cancelled"), DEADLINE_S
        )

    async def job(self, job: dict[str, Any]) -> dict[str, Any]:
        resp = await self.client.get(f"/api/machine/jobs/{job['pk']}/", headers=self.headers)
        body: dict[str, Any] = await resp.json()
        return body

    async def get(self) -> dict[str, Any]:
        resp = await self.client.get(f"/api/machine/{self.pk}/", headers=self.headers)
        body: dict[str, Any] = await resp.json()
        return body

    async def poll(self) -> dict[str, Any]:
        """Poll once, as the poller does on its interval, and read the machine back."""
        await self.client.app[POLLER].poll_once(self.machine())
        return await self.get()

    async def wait_for(self, ready: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """Read the machine through the API until `ready(machine)` holds."""
        return await wait_for_machine(self.client, self.headers, self.pk, ready, what)


async def wait_for_machine(
    client: Client,
    headers: Headers,
    pk: str,
    ready: Callable[[dict[str, Any]], bool],
    what: str,
) -> dict[str, Any]:
    """Read a machine through the API until `ready(machine)` holds."""

    async def check() -> dict[str, Any] | None:
        resp = await client.get(f"/api/machine/{pk}/", headers=headers)
        machine: dict[str, Any] = await resp.json()
        return machine if ready(machine) else None

    result: dict[str, Any] = await wait_until(check, what)
    return result


async def add_printer(
    client: Client, headers: Headers, entry: Entry, sim: Simulator, tap: Tap, connection: str
) -> Printer:
    """Create the machine through the API, set it up, and wait for its first poll.

    The family's driver in the agent takes the entry's timing (quick timeouts) first.
    """
    if entry.timing is not None:
        client.app[REGISTRY].drivers[entry.slug].timing = entry.timing
    machine = await create_machine(client, headers, name=f"{entry.slug}-printer", driver=entry.slug)
    pk = machine["pk"]
    for key, value in (*entry.settings.items(), ("CONNECTION", connection)):
        resp = await client.put(
            f"/api/machine/{pk}/settings/D/{key}/", json={"value": value}, headers=headers
        )
        assert resp.status == 200, await resp.text()
    printer = Printer(entry, pk, sim, tap, client, headers)
    # The poller reads the printer once when the machine starts; wait for that.
    await printer.wait_for(lambda m: m["status"] == 100, "the first poll finds the printer ready")
    return printer


def label_ends(entry: Entry, stream: bytes, count: int) -> list[int]:
    """Where in `stream` each of the first `count` labels is complete (the shortest prefix
    that prints it).

    Found by feeding prefixes to fresh simulators of the family (a binary search), so the suite
    needs to know nothing of the printer's language to cut a line inside a label. Decoding
    labels takes CPU: call it in a thread.
    """

    def printed(length: int) -> int:
        sim = entry.simulator()
        sim.feed(stream[:length])
        return len(sim.labels)

    ends: list[int] = []
    for labels in range(1, count + 1):
        low, high = (ends[-1] if ends else 0), len(stream)
        while low < high:
            middle = (low + high) // 2
            if printed(middle) >= labels:
                high = middle
            else:
                low = middle + 1
        ends.append(low)
    return ends
