"""Taking a central job into the local durable queue: one local job per document, then `accepted`.

Each document is stored under the idempotency key `central:<id>:<index>`, so a job delivered
again (the agent crashed before its `accepted` reached the server) stores nothing twice: the
documents already stored are skipped, the others stored, and `accepted` queued once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from agent.api.errors import ValidationFailed
from agent.api.jobs import print_options
from agent.central.client import CentralClient, Refused
from agent.central.report import published
from agent.central.store import CentralStore, idempotency_key
from agent.config import CentralConfig
from agent.documents import PDF_CONTENT_TYPE, DocumentError
from agent.jobs import JobNotCancellable, JobRunner, TooManyLabels
from agent.machine import Machine
from agent.registry import Registry

log = structlog.get_logger(__name__)


class JobRefused(Exception):
    """The agent cannot print the job; the message says why (reported as `failed`)."""


@dataclass(frozen=True, slots=True)
class CentralJobSpec:
    """A job of `GET jobs/`, checked."""

    id: str
    printer: str
    indexes: tuple[int, ...]
    sizes: tuple[int, ...]
    copies: int
    options: dict[str, Any]


class Intake:
    """Stores central jobs as local jobs; downloads at most `max_downloads` documents at once."""

    def __init__(
        self,
        client: CentralClient,
        store: CentralStore,
        jobs: JobRunner,
        registry: Registry,
        config: CentralConfig,
        max_document_bytes: int,
        now: Callable[[], str],
    ) -> None:
        self.client = client
        self.store = store
        self.jobs = jobs
        self.registry = registry
        self.config = config
        self.max_document_bytes = max_document_bytes
        self.now = now

    async def take(self, raw: dict[str, Any]) -> bool:
        """Store one central job; True when a report was queued (accepted or failed).

        Raises LinkError when the server cannot be used (the job stays on the server's list).
        """
        job_id = str(raw.get("id") or "")
        if not job_id:
            log.warning("central_job_without_id")
            return False
        known = await self.store.job(job_id)
        if known is not None and known.accepted:
            return False  # delivered again before the server had our `accepted`
        try:
            spec = self._check(job_id, raw)
            machine = self._machine(spec)
            options = _options(machine, spec)
            await self.store.begin(job_id, machine.pk, len(spec.indexes), spec.copies, self.now())
            await self._store_documents(machine, spec, options)
        except JobRefused as err:
            await self._fail(job_id, raw, str(err))
            return True
        await self.store.accept(job_id, self.now())
        log.info(
            "central_job_accepted",
            job=job_id,
            machine=machine.name,
            documents=len(spec.indexes),
            copies=spec.copies,
        )
        return True

    def _check(self, job_id: str, raw: dict[str, Any]) -> CentralJobSpec:
        documents = raw.get("documents")
        copies = raw.get("copies", 1)
        options = raw.get("options") or {}
        if not isinstance(documents, list) or not documents:
            raise JobRefused("The job has no documents to print.")
        if not isinstance(copies, int) or isinstance(copies, bool) or copies < 1:
            raise JobRefused(f"The job's copies ({copies!r}) is not a whole number of at least 1.")
        if not isinstance(options, dict):
            raise JobRefused("The job's options are not an object.")
        indexes, sizes = [], []
        for document in documents:
            index = document.get("index") if isinstance(document, dict) else None
            size = document.get("size", 0) if isinstance(document, dict) else None
            if not isinstance(index, int) or not isinstance(size, int):
                raise JobRefused("A document of the job has no whole-number index and size.")
            if size > self.max_document_bytes:
                raise JobRefused(
                    f"Document {index} has {size} bytes, more than this agent takes "
                    f"({self.max_document_bytes}, its http.max_body_bytes)."
                )
            indexes.append(index)
            sizes.append(size)
        if len(set(indexes)) != len(indexes):
            raise JobRefused("The job names a document index twice.")
        order = sorted(range(len(indexes)), key=lambda i: indexes[i])
        return CentralJobSpec(
            id=job_id,
            printer=str(raw.get("printer") or ""),
            indexes=tuple(indexes[i] for i in order),
            sizes=tuple(sizes[i] for i in order),
            copies=copies,
            options=options,
        )

    def _machine(self, spec: CentralJobSpec) -> Machine:
        machine = self.registry.get(spec.printer)
        if machine is None or machine not in published(self.config, [machine]):
            raise JobRefused(
                f"The agent {self.config.name!r} publishes no printer {spec.printer!r} "
                "(deleted, or not in central.publish)."
            )
        return machine

    async def _store_documents(
        self, machine: Machine, spec: CentralJobSpec, options: dict[str, Any]
    ) -> None:
        """Download and submit the documents not stored yet, in index order, a window at a time."""
        missing = [
            index
            for index in spec.indexes
            if await self.jobs.jobs.get_by_key(machine.pk, idempotency_key(spec.id, index)) is None
        ]
        window = self.config.max_downloads
        for start in range(0, len(missing), window):
            indexes = missing[start : start + window]
            documents = await asyncio.gather(*(self._download(spec.id, i) for i in indexes))
            await self._submit(machine, spec, options, indexes, documents)

    async def _download(self, job_id: str, index: int) -> bytes:
        try:
            return await self.client.document(job_id, index, self.max_document_bytes)
        except Refused as err:
            raise JobRefused(f"Document {index} could not be downloaded: {err.detail}") from err

    async def _submit(
        self,
        machine: Machine,
        spec: CentralJobSpec,
        options: dict[str, Any],
        indexes: Sequence[int],
        documents: Sequence[bytes],
    ) -> None:
        for index, document in zip(indexes, documents, strict=True):
            try:
                await self.jobs.submit(
                    machine,
                    document,
                    PDF_CONTENT_TYPE,
                    spec.copies,
                    options,
                    idempotency_key(spec.id, index),
                )
            except (DocumentError, TooManyLabels) as err:
                raise JobRefused(f"Document {index}: {err}") from err

    async def _fail(self, job_id: str, raw: dict[str, Any], message: str) -> None:
        """Report the job failed; documents of it already stored are cancelled."""
        machine = self.registry.get(str(raw.get("printer") or ""))
        documents = raw.get("documents")
        count = len(documents) if isinstance(documents, list) else 0
        copies = raw.get("copies") if isinstance(raw.get("copies"), int) else 1
        if machine is not None:
            for index in range(count):
                stored = await self.jobs.jobs.get_by_key(machine.pk, idempotency_key(job_id, index))
                if stored is not None and not stored.status.finished:
                    with contextlib.suppress(KeyError, JobNotCancellable):
                        await self.jobs.cancel(stored.pk, wait=0)
        await self.store.fail(
            job_id,
            machine.pk if machine is not None else "",
            count,
            int(copies or 1),
            message,
            self.now(),
        )
        log.warning("central_job_refused", job=job_id, reason=message)


def _options(machine: Machine, spec: CentralJobSpec) -> dict[str, Any]:
    """The job's options as the machine's driver takes them (unknown ones are ignored)."""
    # InvenTree sends an option left empty in the print dialog as null: the driver's default.
    source = {name: _text(value) for name, value in spec.options.items() if value is not None}
    source["copies"] = str(spec.copies)
    try:
        values = dict(print_options(machine).parse(source))
    except TypeError as err:
        raise JobRefused(f"The printer {machine.name!r} has no label-printer driver.") from err
    except ValidationFailed as err:
        problems = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in err.body.items())
        raise JobRefused(f"The job's options are not valid for this printer ({problems}).") from err
    values.pop("copies", None)
    return values


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
