"""Contract tests: real answers of the agent, checked with openapi-core against InvenTree's official
v303 export and against the agent's own `/api/schema/`."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec
from PIL import Image, ImageDraw

from agent.api.schema import openapi_document
from agent.appkeys import REGISTRY
from agent.config import HttpConfig, Settings
from drivers.base import MachineProperty
from tests.conftest import ADMIN_PASSWORD, ADMIN_USER, Headers, create_machine, wait_for_job

_EXPORT_NAME = "inventree-api-303-machine.yaml"
# InvenTree's official export: a copy in tests/data/ if there is one, else the shared spec folder.
OFFICIAL_EXPORT = next(
    (
        candidate
        for candidate in (
            Path(__file__).parent / "data" / _EXPORT_NAME,
            Path(__file__).resolve().parents[2] / "shared" / "spec" / _EXPORT_NAME,
        )
        if candidate.exists()
    ),
    Path(__file__).parent / "data" / _EXPORT_NAME,
)
BODY_LIMIT = 4096
# The export lacks `nullable` on fields InvenTree 303 itself answers null: staff-only server
# facts of `/api/`, and `model_name`/`api_url` of settings without a related model.
EXPORT_MISSES_NULLABLE = frozenset(
    {"system_health", "database", "platform", "installer", "target", "django_admin"}
    | {"model_name", "api_url"}
)
NO_BODY: Any = object()
ANONYMOUS_OPERATIONS = frozenset(
    {"root_retrieve", "schema_retrieve", "auth_login_create", "agent_health_retrieve"}
)

Client = TestClient[Any, Any]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared test settings, with a small body limit so a 413 is cheap to provoke."""
    return settings.model_copy(update={"http": HttpConfig(max_body_bytes=BODY_LIMIT)})


@dataclass
class CoreRequest:
    """openapi-core's Request protocol for a request the test client made."""

    method: str
    path: str
    host_url: str = "http://127.0.0.1"
    body: bytes | None = None
    content_type: str = "application/json"
    parameters: RequestParameters = field(default_factory=RequestParameters)


@dataclass
class CoreResponse:
    """openapi-core's Response protocol for an aiohttp client answer."""

    status_code: int
    content_type: str
    headers: Mapping[str, str]
    data: bytes


@dataclass
class Exchange:
    """One real request and the agent's answer."""

    request: CoreRequest
    response: CoreResponse

    def json(self) -> Any:
        return json.loads(self.response.data)


async def call(
    client: Client,
    method: str,
    path: str,
    *,
    expect: int,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    json_body: Any = NO_BODY,
    data: bytes | FormData | None = None,
) -> Exchange:
    """Make a request on the real test server; assert its status; keep both for validation.

    The client's cookie jar is emptied first: each request carries only the credentials given.
    """
    client.session.cookie_jar.clear()
    extra: dict[str, Any] = {}
    if json_body is not NO_BODY:
        extra["json"] = json_body
    if data is not None:
        extra["data"] = data
    resp = await client.request(method, path, headers=headers, params=params, **extra)
    body = await resp.read()
    assert resp.status == expect, f"{method} {path}: {resp.status} {body[:300]!r}"
    content_type = resp.headers.get("Content-Type", "") if body else ""
    return Exchange(
        CoreRequest(method.lower(), path),
        CoreResponse(resp.status, content_type, resp.headers, body),
    )


def schema_errors(spec: OpenAPI, exchange: Exchange) -> list[str]:
    """Every way the answer breaks `spec`, as `json/path: message`."""
    found: list[str] = []
    for error in spec.iter_response_errors(exchange.request, exchange.response):
        details = list(getattr(error.__cause__, "schema_errors", None) or [])
        if not details:
            found.append(f"{type(error).__name__}: {error}")
        for detail in details:
            where = "/".join(str(part) for part in detail.absolute_path)
            found.append(f"{where}: {detail.message}")
    return found


@functools.cache
def official_document() -> dict[str, Any]:
    """InvenTree's official v303 export (machine endpoints) as data."""
    document: dict[str, Any] = yaml.safe_load(OFFICIAL_EXPORT.read_text())
    return document


@functools.cache
def official() -> OpenAPI:
    """InvenTree's official v303 export (machine endpoints)."""
    return OpenAPI.from_dict(official_document())


@pytest.fixture(scope="module", autouse=True)
def _documents_loaded() -> None:
    """Parse the export before the tests: YAML parsing would block their event loops."""
    official()


@functools.cache
def _own_spec(text: str) -> OpenAPI:
    config = Config(extra_media_type_deserializers={"application/yaml": yaml.safe_load})
    return OpenAPI.from_dict(json.loads(text), config=config)


async def own(client: Client) -> OpenAPI:
    """The document the agent serves at `/api/schema/`, anonymously."""
    resp = await client.get("/api/schema/")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    return await asyncio.to_thread(_own_spec, await resp.text())


def unexpected_official_errors(exchange: Exchange) -> list[str]:
    """Official-export errors, minus nulls InvenTree 303 answers as well."""
    return [
        error
        for error in schema_errors(official(), exchange)
        if not (
            error.split(":")[0].rsplit("/", 1)[-1] in EXPORT_MISSES_NULLABLE
            and error.split(": ", 1)[1].startswith("None ")
        )
    ]


async def save_every_setting(client: Client, headers: Headers, pk: str) -> None:
    """Store each listed setting once, so every entry of the list has an integer pk."""
    listing = await call(client, "GET", f"/api/machine/{pk}/settings/", expect=200, headers=headers)
    for entry in listing.json():
        value = entry["value"]
        if entry["type"] == "integer" and value == "":
            value = "7"
        url = f"/api/machine/{pk}/settings/{entry['config_type']}/{entry['key']}/"
        await call(client, "PUT", url, expect=200, headers=headers, json_body={"value": value})


async def success_tour(client: Client, admin: Headers) -> dict[str, Exchange]:
    """A success answer of every documented operation, labelled."""
    done: dict[str, Exchange] = {}

    async def record(label: str, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        done[label] = await call(client, method, path, expect=expect, **kw)
        return done[label].json() if done[label].response.data else None

    await record("root anonymous", "GET", "/api/")
    await record("root staff", "GET", "/api/", headers=admin)
    await record("token", "GET", "/api/user/token/", headers=admin, params={"name": "contract"})
    await record("status classes", "GET", "/api/generic/status/", headers=admin)
    await record("status class", "GET", "/api/generic/status/LabelPrinterStatus/", headers=admin)
    body: dict[str, Any] = {"name": "alpha", "machine_type": "label-printer", "driver": "recording"}
    pk = (await record("create", "POST", "/api/machine/", 201, headers=admin, json_body=body))["pk"]
    for name, machine_type, driver in (("beta", "label-printer", "nope"), ("gamma", "robot", "x")):
        body = {"name": name, "machine_type": machine_type, "driver": driver, "active": False}
        await record(f"create {name}", "POST", "/api/machine/", 201, headers=admin, json_body=body)
    # What a driver's status poll reports, one property of each type.
    client.app[REGISTRY].get(pk).set_properties(
        [
            MachineProperty("Model", "QL-820NWB", group="Printer"),
            MachineProperty("Cutter", True, type="bool"),
            MachineProperty("Labels", 1200, type="int"),
            MachineProperty("Temperature", 41.5, type="float"),
            MachineProperty("Ribbon", 30, type="progress"),
        ]
    )
    page = {"limit": "1", "offset": "1"}
    await record("list page", "GET", "/api/machine/", headers=admin, params=page)
    machine = f"/api/machine/{pk}/"
    await record("detail", "GET", machine, headers=admin)
    body = {"name": "alpha-1", "active": True}
    await record("update", "PUT", machine, headers=admin, json_body=body)
    await record("partial update", "PATCH", machine, headers=admin, json_body={"name": "alpha"})
    await record("restart", "POST", f"{machine}restart/", headers=admin)
    await save_every_setting(client, admin, pk)
    await record("settings", "GET", f"{machine}settings/", headers=admin)
    await record("setting M", "GET", f"{machine}settings/M/LOCATION/", headers=admin)
    await record("setting D", "GET", f"{machine}settings/D/copies/", headers=admin)
    value = {"value": "3"}
    await record(
        "setting put", "PUT", f"{machine}settings/D/COPIES/", headers=admin, json_body=value
    )
    value = {"value": "fine"}
    await record(
        "setting patch", "PATCH", f"{machine}settings/D/MODE/", headers=admin, json_body=value
    )
    await record("types", "GET", "/api/machine/types/", headers=admin)
    params = {"machine_type": "label-printer"}
    await record("drivers", "GET", "/api/machine/drivers/", headers=admin, params=params)
    await record("registry status", "GET", "/api/machine/status/", headers=admin)
    await record("delete", "DELETE", machine, 204, headers=admin)
    return done


async def test_success_answers_match_the_official_export(client: Client, admin: Headers) -> None:
    answers = await success_tour(client, admin)

    assert answers["list page"].json()["next"]
    assert answers["list page"].json()["previous"]
    assert answers["registry status"].json()["registry_errors"]
    assert len(answers["detail"].json()["properties"]) == 5
    for label, exchange in answers.items():
        assert unexpected_official_errors(exchange) == [], label


async def test_success_answers_match_the_own_schema(client: Client, admin: Headers) -> None:
    answers = await success_tour(client, admin)
    spec = await own(client)

    for label, exchange in answers.items():
        assert schema_errors(spec, exchange) == [], label


async def test_bare_list_without_limit_is_the_known_deviation(
    client: Client, admin: Headers
) -> None:
    for name in ("one", "two"):
        body = {"name": name, "machine_type": "label-printer", "driver": "virtual"}
        await call(client, "POST", "/api/machine/", expect=201, headers=admin, json_body=body)
    spec = await own(client)

    bare = await call(client, "GET", "/api/machine/", expect=200, headers=admin)
    page = await call(
        client, "GET", "/api/machine/", expect=200, headers=admin, params={"limit": "5"}
    )

    assert [m["name"] for m in bare.json()] == [m["name"] for m in page.json()["results"]]
    assert [e.split(":")[0] for e in schema_errors(official(), bare)] == [""]
    assert "is not of type 'object'" in schema_errors(official(), bare)[0]
    assert schema_errors(official(), page) == []
    assert schema_errors(spec, bare) == []
    assert schema_errors(spec, page) == []


async def test_unsaved_settings_have_null_pk_and_only_the_own_schema_allows_it(
    client: Client, admin: Headers
) -> None:
    body = {"name": "fresh", "machine_type": "label-printer", "driver": "recording"}
    created = await call(client, "POST", "/api/machine/", expect=201, headers=admin, json_body=body)
    url = f"/api/machine/{created.json()['pk']}/settings/"
    spec = await own(client)

    listing = await call(client, "GET", url, expect=200, headers=admin)
    detail = await call(client, "GET", f"{url}D/HOST/", expect=200, headers=admin)

    assert {entry["pk"] for entry in listing.json()} == {None}
    assert detail.json()["pk"] is None
    for exchange in (listing, detail):
        unexpected = unexpected_official_errors(exchange)
        assert unexpected
        assert all(e.split(":")[0].endswith("pk") for e in unexpected), unexpected
        assert schema_errors(spec, exchange) == []


async def error_tour(
    client: Client, admin: Headers, viewer: Headers, nobody: Headers
) -> dict[str, Exchange]:
    """An answer of every documented error kind, labelled."""
    done: dict[str, Exchange] = {}

    async def record(label: str, method: str, path: str, expect: int, **kw: Any) -> None:
        done[label] = await call(client, method, path, expect=expect, **kw)

    body = {"name": "alpha", "machine_type": "label-printer", "driver": "recording"}
    created = await call(client, "POST", "/api/machine/", expect=201, headers=admin, json_body=body)
    machine = f"/api/machine/{created.json()['pk']}/"
    unknown = "/api/machine/00000000-0000-4000-8000-000000000000/"
    session = {"Cookie": await _session_cookie(client)}
    bad_token = {"Authorization": "Token inv-nope"}
    as_json = {**admin, "Content-Type": "application/json"}
    login = {"username": ADMIN_USER, "password": "wrong"}

    await record("required fields", "POST", "/api/machine/", 400, headers=admin, json_body={})
    await record("duplicate name", "POST", "/api/machine/", 400, headers=admin, json_body=body)
    await record("broken json", "PATCH", machine, 400, headers=as_json, data=b"{")
    bad_int = {"value": "abc"}
    await record(
        "bad int", "PATCH", f"{machine}settings/D/SPEED/", 400, headers=admin, json_body=bad_int
    )
    bad_choice = {"value": "slow"}
    await record(
        "bad choice", "PUT", f"{machine}settings/D/MODE/", 400, headers=admin, json_body=bad_choice
    )
    await record("unknown status class", "GET", "/api/generic/status/Nope/", 400, headers=admin)
    await record("wrong password", "POST", "/api/auth/login/", 400, json_body=login)
    await record("no credentials", "GET", "/api/machine/", 401)
    await record("no credentials settings", "GET", f"{machine}settings/", 401)
    await record("invalid token on root", "GET", "/api/", 401, headers=bad_token)
    await record("invalid token on schema", "GET", "/api/schema/", 401, headers=bad_token)
    await record("no role", "GET", "/api/machine/", 403, headers=nobody)
    other = {**body, "name": "other"}
    await record("view role creates", "POST", "/api/machine/", 403, headers=viewer, json_body=other)
    host = {"value": "h"}
    await record(
        "view role sets", "PATCH", f"{machine}settings/D/HOST/", 403, headers=viewer, json_body=host
    )
    await record("csrf", "POST", f"{machine}restart/", 403, headers=session)
    await record("csrf logout", "POST", "/api/auth/logout/", 403, headers=session)
    await record("unknown machine", "GET", unknown, 404, headers=admin)
    await record("unknown machine delete", "DELETE", unknown, 404, headers=admin)
    await record("unknown machine restart", "POST", f"{unknown}restart/", 404, headers=admin)
    await record("unknown machine settings", "GET", f"{unknown}settings/", 404, headers=admin)
    await record("unknown setting", "GET", f"{machine}settings/D/NOPE/", 404, headers=admin)
    upper = "/api/machine/" + machine.removeprefix("/api/machine/").upper()
    await record("upper-case uuid", "GET", upper, 404, headers=admin)
    await record("schema format", "GET", "/api/schema/", 404, params={"format": "xml"})
    big = b'{"name": "' + b"x" * BODY_LIMIT + b'"}'
    await record("too large", "POST", "/api/machine/", 413, headers=as_json, data=big)
    text = {**admin, "Content-Type": "text/plain"}
    await record("media type", "PUT", machine, 415, headers=text, data=b"name=x")
    csv = {"Content-Type": "text/csv"}
    await record("login media type", "POST", "/api/auth/login/", 415, headers=csv, data=b"a,b")
    return done


async def test_error_answers_match_the_own_schema(
    client: Client, admin: Headers, viewer: Headers, nobody: Headers
) -> None:
    answers = await error_tour(client, admin, viewer, nobody)
    spec = await own(client)

    assert answers["no credentials"].response.headers["WWW-Authenticate"] == "Token"
    assert answers["broken json"].json()["detail"].startswith("JSON parse error")
    assert set(answers["upper-case uuid"].json()) == {"detail", "url"}
    for label, exchange in answers.items():
        assert schema_errors(spec, exchange) == [], label


async def print_tour(client: Client, admin: Headers) -> dict[str, Exchange]:
    """A success answer of every print and job operation, in every job state, labelled."""
    done: dict[str, Exchange] = {}

    async def record(label: str, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        done[label] = await call(client, method, path, expect=expect, **kw)
        return done[label].json()

    printer = await create_machine(client, admin, name="printer")
    url = f"/api/machine/{printer['pk']}/print/"
    pdf = {**admin, "Content-Type": "application/pdf"}
    options = {"copies": "2", "threshold": "100", "dither": "no", "rotation": "180"}
    first = await record("print pdf", "POST", url, 201, headers=pdf, params=options, data=_pdf())
    png = {**admin, "Content-Type": "image/png"}
    await record("print png", "POST", url, 201, headers=png, data=_png())
    form = FormData()
    form.add_field("file", _pdf(), filename="label.pdf", content_type="application/pdf")
    form.add_field("copies", "3")
    await record("print form", "POST", url, 201, headers=admin, data=form)
    # The virtual printer refuses printer language: a failed job, with its error.
    raw = {**admin, "Content-Type": "application/octet-stream", "Idempotency-Key": "order-7"}
    failed = await record("print raw", "POST", url, 201, headers=raw, data=b"^XA^XZ")
    await record("print raw again", "POST", url, headers=raw, data=b"^XA^FDother^XZ")
    for job in (first, failed):
        await wait_for_job(client, admin, job["pk"], ("complete", "failed"))
    await record("complete", "GET", f"/api/machine/jobs/{first['pk']}/", headers=admin)
    await record("failed", "GET", f"/api/machine/jobs/{failed['pk']}/", headers=admin)

    # Slow labels, to see a job while it prints.
    delay = f"/api/machine/{printer['pk']}/settings/D/LABEL_DELAY_MS/"
    await call(client, "PUT", delay, expect=200, headers=admin, json_body={"value": "50"})
    slow = await record(
        "print slow", "POST", url, 201, headers=pdf, params={"copies": "5"}, data=_pdf()
    )
    await wait_for_job(client, admin, slow["pk"], ("printing",))
    await record("printing", "GET", f"/api/machine/jobs/{slow['pk']}/", headers=admin)
    await wait_for_job(client, admin, slow["pk"], ("complete",))
    await call(client, "PUT", delay, expect=200, headers=admin, json_body={"value": "0"})

    # A printer out of paper keeps the job queued, so it can be cancelled.
    fault = f"/api/machine/{printer['pk']}/settings/D/FAULT/"
    await call(client, "PUT", fault, expect=200, headers=admin, json_body={"value": "paper-out"})
    waiting = await record("print queued", "POST", url, 201, headers=pdf, data=_pdf())
    await record("cancel", "DELETE", f"/api/machine/jobs/{waiting['pk']}/", headers=admin)

    await record("jobs", "GET", "/api/machine/jobs/", headers=admin)
    page = {"limit": "2", "offset": "2"}
    await record("jobs page", "GET", "/api/machine/jobs/", headers=admin, params=page)
    mine = {"machine": printer["pk"], "status": "complete"}
    await record("jobs filtered", "GET", "/api/machine/jobs/", headers=admin, params=mine)
    return done


async def test_print_and_job_answers_match_the_own_schema(client: Client, admin: Headers) -> None:
    answers = await print_tour(client, admin)
    spec = await own(client)

    def job(label: str) -> dict[str, Any]:
        result: dict[str, Any] = answers[label].json()
        return result

    assert answers["print raw again"].response.status_code == 200
    assert job("print raw again")["pk"] == job("print raw")["pk"]
    assert (job("print pdf")["status"], job("print pdf")["started"]) == ("queued", None)
    assert (job("print raw")["pages"], job("print form")["copies"]) == (None, 3)
    assert (job("complete")["status"], job("complete")["progress"]) == ("complete", 2)
    assert job("failed")["status"] == "failed"
    assert job("failed")["errors"]
    assert job("printing")["status"] == "printing"
    assert job("printing")["started"] is not None
    assert job("printing")["finished"] is None
    assert (job("cancel")["status"], job("cancel")["started"]) == ("cancelled", None)
    assert job("cancel")["finished"] is not None
    assert len(answers["jobs"].json()) == 6
    assert answers["jobs page"].json()["next"]
    assert answers["jobs page"].json()["previous"]
    assert {entry["status"] for entry in answers["jobs filtered"].json()} == {"complete"}
    for label, exchange in answers.items():
        assert schema_errors(spec, exchange) == [], label


async def print_error_tour(client: Client, admin: Headers, viewer: Headers) -> dict[str, Exchange]:
    """An answer of every documented error of the print and job operations, labelled."""
    done: dict[str, Exchange] = {}

    async def record(label: str, method: str, path: str, expect: int, **kw: Any) -> None:
        done[label] = await call(client, method, path, expect=expect, **kw)

    printer = await create_machine(client, admin, name="printer")
    url = f"/api/machine/{printer['pk']}/print/"
    pdf = {**admin, "Content-Type": "application/pdf"}
    printed = (await call(client, "POST", url, expect=201, headers=pdf, data=_pdf())).json()["pk"]
    job = f"/api/machine/jobs/{printed}/"
    await wait_for_job(client, admin, printed, ("complete",))
    driverless = await create_machine(client, admin, name="driverless", driver="nope")
    unknown = "00000000-0000-4000-8000-000000000000"
    bad = {"copies": "0", "threshold": "300", "dither": "perhaps", "rotation": "45"}
    form = FormData()
    form.add_field("copies", "2")
    form.add_field("other", _pdf(), filename="label.pdf", content_type="application/pdf")
    broken_form = {**admin, "Content-Type": "multipart/form-data; boundary=xyz"}
    long_key = {**pdf, "Idempotency-Key": "k" * 256}

    await record("bad document", "POST", url, 400, headers=pdf, data=b"%PDF-1.4 garbage")
    await record("bad options", "POST", url, 400, headers=pdf, params=bad, data=_pdf())
    await record("no file part", "POST", url, 400, headers=admin, data=form)
    await record("broken form", "POST", url, 400, headers=broken_form, data=b"garbage")
    await record("long key", "POST", url, 400, headers=long_key, data=_pdf())
    no_driver = f"/api/machine/{driverless['pk']}/print/"
    await record("no driver", "POST", no_driver, 400, headers=pdf, data=_pdf())
    await record(
        "bad status", "GET", "/api/machine/jobs/", 400, headers=admin, params={"status": "lost"}
    )
    plain = {"Content-Type": "application/pdf"}
    await record("print anonymous", "POST", url, 401, headers=plain, data=_pdf())
    await record("jobs anonymous", "GET", "/api/machine/jobs/", 401)
    await record("job anonymous", "GET", job, 401)
    await record("cancel anonymous", "DELETE", job, 401)
    viewer_pdf = {**viewer, "Content-Type": "application/pdf"}
    await record("viewer prints", "POST", url, 403, headers=viewer_pdf, data=_pdf())
    await record("viewer cancels", "DELETE", job, 403, headers=viewer)
    await record(
        "unknown machine", "POST", f"/api/machine/{unknown}/print/", 404, headers=pdf, data=_pdf()
    )
    await record("unknown job", "GET", f"/api/machine/jobs/{unknown}/", 404, headers=admin)
    await record(
        "unknown job cancel", "DELETE", f"/api/machine/jobs/{unknown}/", 404, headers=admin
    )
    upper = f"/api/machine/jobs/{printed.upper()}/"
    await record("upper-case job", "GET", upper, 404, headers=admin)
    await record("cancel printed", "DELETE", job, 409, headers=admin)
    big = b"%PDF-1.4\n" + b"x" * BODY_LIMIT
    await record("too large", "POST", url, 413, headers=pdf, data=big)
    text = {**admin, "Content-Type": "text/plain"}
    await record("media type", "POST", url, 415, headers=text, data=b"hello")
    return done


async def test_print_and_job_errors_match_the_own_schema(
    client: Client, admin: Headers, viewer: Headers
) -> None:
    answers = await print_error_tour(client, admin, viewer)
    spec = await own(client)

    assert set(answers["bad options"].json()) == {"copies", "threshold", "dither", "rotation"}
    assert set(answers["bad document"].json()) == {"document"}
    assert set(answers["no file part"].json()) == {"file"}
    assert set(answers["long key"].json()) == {"Idempotency-Key"}
    assert set(answers["no driver"].json()) == {"non_field_errors"}
    assert answers["broken form"].json()["detail"].startswith("Multipart form parse error")
    assert answers["unknown machine"].json() == {
        "detail": "Machine '00000000-0000-4000-8000-000000000000' not found"
    }
    assert set(answers["upper-case job"].json()) == {"detail", "url"}
    for label, exchange in answers.items():
        assert schema_errors(spec, exchange) == [], label


async def test_user_and_auth_answers_match_the_own_schema(client: Client, admin: Headers) -> None:
    spec = await own(client)
    credentials = {"username": ADMIN_USER, "password": ADMIN_PASSWORD}

    login = await call(client, "POST", "/api/auth/login/", expect=200, json_body=credentials)
    token = {"Authorization": f"Token {login.json()['key']}"}
    answers = [
        login,
        await call(client, "GET", "/api/user/me/", expect=200, headers=token),
        await call(client, "GET", "/api/user/roles/", expect=200, headers=token),
        await call(client, "GET", "/api/schema/", expect=200, params={"format": "yaml"}),
        await call(client, "POST", "/api/auth/logout/", expect=200, headers=token),
        await call(client, "GET", "/api/user/me/", expect=401, headers=token),
    ]

    for exchange in answers:
        # Checking the YAML document parses it: a thread keeps that off the loop.
        errors = await asyncio.to_thread(schema_errors, spec, exchange)
        assert errors == [], exchange.request.path


async def test_method_not_allowed_matches_the_documented_answer(
    client: Client, admin: Headers
) -> None:
    body = {"name": "alpha", "machine_type": "label-printer", "driver": "recording"}
    created = await call(client, "POST", "/api/machine/", expect=201, headers=admin, json_body=body)
    machine = f"/api/machine/{created.json()['pk']}/"
    document = json.loads(await (await client.get("/api/schema/")).text())
    answer = document["components"]["responses"]["MethodNotAllowed"]
    validator = _component_validator(document, answer["content"]["application/json"]["schema"])

    for method, path in (
        ("GET", f"{machine}restart/"),
        ("POST", f"{machine}settings/D/HOST/"),
        ("DELETE", f"{machine}settings/D/HOST/"),
        ("PUT", "/api/machine/types/"),
        ("GET", f"{machine}print/"),
        ("POST", "/api/machine/jobs/"),
    ):
        exchange = await call(client, method, path, expect=405, headers=admin)
        assert exchange.json() == {"detail": f'Method "{method}" not allowed.'}
        assert list(validator.iter_errors(exchange.json())) == []
        assert method.lower() not in document["paths"][_template(document, path)]


async def test_own_document_is_valid_and_keeps_inventree_names(client: Client) -> None:
    resp = await client.get("/api/schema/")
    document = await resp.json()
    yaml_resp = await client.get("/api/schema/", params={"format": "yaml"})
    exported = official_document()

    await asyncio.to_thread(validate_spec, document)
    assert yaml_resp.status == 200
    assert yaml_resp.content_type == "application/yaml"
    assert await asyncio.to_thread(yaml.safe_load, await yaml_resp.text()) == document
    assert document["openapi"] == "3.0.3"
    assert document["components"]["securitySchemes"] == exported["components"]["securitySchemes"]
    for path, item in exported["paths"].items():
        for method, operation in item.items():
            assert document["paths"][path][method]["operationId"] == operation["operationId"]
    for name, schema in exported["components"]["schemas"].items():
        ours = document["components"]["schemas"][name]
        assert set(schema.get("properties", {})) <= set(ours.get("properties", {})), name
    for item in document["paths"].values():
        for operation in item.values():
            security = operation["security"]
            assert ({} in security) == (operation["operationId"] in ANONYMOUS_OPERATIONS)


async def test_every_route_and_method_is_documented(client: Client) -> None:
    document = await (await client.get("/api/schema/")).json()
    documented = {_shape(path): set(item) for path, item in document["paths"].items()}

    served: dict[str, set[str]] = {}
    for resource in client.app.router.resources():
        view = getattr(next(iter(resource)).handler, "__self__", None)
        if view is not None:
            methods = {m for m in ("get", "put", "post", "delete", "patch") if hasattr(view, m)}
            served[_shape(resource.canonical.removesuffix("{tail}"))] = methods

    assert set(served) == set(documented)
    assert {path: served[path] for path in documented} == documented


async def _session_cookie(client: Client) -> str:
    credentials = {"username": ADMIN_USER, "password": ADMIN_PASSWORD}
    resp = await client.post("/api/auth/login/", json=credentials)
    assert resp.status == 200
    cookies = resp.cookies
    return f"sessionid={cookies['sessionid'].value}; csrftoken={cookies['csrftoken'].value}"


def _pdf() -> bytes:
    """A one-label PDF at 300 dpi (1-bit, so it stays under the test body limit)."""
    image = Image.new("1", (732, 342), 1)
    ImageDraw.Draw(image).rectangle((20, 20, 60, 200), fill=0)
    buffer = io.BytesIO()
    image.save(buffer, "PDF", resolution=300)
    return buffer.getvalue()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (200, 100), 1).save(buffer, "PNG")
    return buffer.getvalue()


def _component_validator(document: dict[str, Any], schema: dict[str, Any]) -> OAS30Validator:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return OAS30Validator(schema)


def _shape(path: str) -> str:
    """A path with every parameter as `{}`, to compare aiohttp routes with OpenAPI paths."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def _template(document: dict[str, Any], path: str) -> str:
    """The documented path template a concrete path falls under (literal segments first)."""
    parts = path.strip("/").split("/")
    templates: list[str] = sorted(document["paths"], key=lambda t: t.count("{"))
    for template in templates:
        pieces = template.strip("/").split("/")
        if len(pieces) == len(parts) and all(
            p == q or p.startswith("{") for p, q in zip(pieces, parts, strict=True)
        ):
            return template
    raise AssertionError(path)


def test_readme_names_every_endpoint_that_needs_no_credentials() -> None:
    """InvenTree serves `/api/schema/` to anyone (drf-spectacular's AllowAny); so does the agent,
    and the README must say which endpoints answer without credentials."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    paragraph = next(p for p in readme.split("\n\n") if p.startswith("Authentication:"))
    document = openapi_document()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if {} in operation["security"]:
                assert f"`{method.upper()} {path}`" in paragraph, (method, path)
