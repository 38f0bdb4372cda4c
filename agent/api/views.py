"""The request pipeline of every API view, in DRF's order.

Authenticate (invalid credentials: 401), check permissions (none: 401, not allowed: 403), then
find the method (405). HEAD is GET without a body; OPTIONS describes the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from agent.api.declare import Endpoint
from agent.api.errors import (
    ApiError,
    MethodNotAllowed,
    NotAuthenticated,
    ParseError,
    PermissionDenied,
    RequestTimeout,
    Throttled,
    UnsupportedMediaType,
    drf_json,
)
from agent.api.metadata import view_metadata
from agent.appkeys import AUTHENTICATOR
from agent.auth import AuthenticationFailed, Identity, User, csrf_failure
from agent.login_limits import LoginThrottled

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# The caller's identity, resolved once per request.
# A client gets this long to send its request body: a 16 MiB label PDF over a slow site link
# arrives well within it, and a stalled upload does not hold a connection for ever.
BODY_TIMEOUT_S = 60.0

_IDENTITY_KEY = web.RequestKey[Identity | None]("identity")
# Only a `\uD800`-`\uDFFF` escape can put a surrogate into parsed JSON.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# DRF's order of `http_method_names`, in which it lists a view's methods in `Allow`.
_METHOD_ORDER = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

# InvenTree's RolePermission: the `admin` ruleset permission each method needs.
ROLE_FOR_METHOD: Mapping[str, str] = {
    "GET": "view",
    "HEAD": "view",
    "OPTIONS": "view",
    "POST": "add",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}
# DjangoModelPermissions on a model with no role check (machine settings): only writes need one.
MODEL_PERMISSION_FOR_METHOD: Mapping[str, str] = {
    "POST": "add",
    "PUT": "change",
    "PATCH": "change",
    "DELETE": "delete",
}


@dataclass(frozen=True, slots=True)
class RequestData:
    """A parsed request body; `form` is true for urlencoded and multipart bodies."""

    value: Any
    form: bool = False


async def identify(request: web.Request) -> Identity | None:
    """Who is calling: Token, then Basic, then the session cookie (with CSRF on unsafe methods)."""
    if _IDENTITY_KEY in request:
        cached: Identity | None = request[_IDENTITY_KEY]
        return cached
    authenticator = request.app[AUTHENTICATOR]
    identity: Identity | None = None
    header = request.headers.get("Authorization")
    if header:
        try:
            identity = await authenticator.from_authorization(header, request.remote)
        except LoginThrottled as err:
            raise Throttled(err.retry_after_s) from err
        except AuthenticationFailed as err:
            raise NotAuthenticated(str(err)) from err
    if identity is None:
        session_key = request.cookies.get("sessionid")
        if session_key:
            identity = await authenticator.from_session(session_key)
            if identity is not None and request.method not in SAFE_METHODS:
                reason = csrf_failure(
                    request.cookies.get("csrftoken"), request.headers.get("X-CSRFToken")
                )
                if reason is not None:
                    raise PermissionDenied(f"CSRF Failed: {reason}")
    request[_IDENTITY_KEY] = identity
    return identity


class ApiView:
    """Base of the API views.

    Subclasses define `get`/`post`/..., a permission policy, and their `endpoint`: the
    declaration of their operations that OPTIONS and the OpenAPI document are derived from.
    """

    endpoint: ClassVar[Endpoint]
    # "authenticated", "admin_role" (InvenTree's RolePermission) or "model" (DjangoModelPermissions).
    permission: ClassVar[str] = "authenticated"
    allow_anonymous: ClassVar[bool] = False
    # False for views that take credentials in the body (login): no session or CSRF handling.
    authenticate: ClassVar[bool] = True

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self._user: User | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse a view whose handlers and declared operations differ: each is described once."""
        super().__init_subclass__(**kwargs)
        handled = {
            m for m in _METHOD_ORDER if m not in ("HEAD", "OPTIONS") and hasattr(cls, m.lower())
        }
        declared = {op.method for op in cls.endpoint.operations}
        if handled != declared:
            raise TypeError(
                f"{cls.__name__} handles {sorted(handled)} but its endpoint declares {sorted(declared)}"
            )

    @classmethod
    async def handle(cls, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler: one view object per request; `Allow` on every answer, as DRF."""
        allow = cls.allowed_methods()
        try:
            response = await cls(request).dispatch()
        except ApiError as err:
            err.headers = {**(err.headers or {}), "Allow": allow}
            raise
        if not response.prepared:
            response.headers["Allow"] = allow
        return response

    @classmethod
    def allowed_methods(cls) -> str:
        """The methods this view answers, as DRF lists them in `Allow`."""
        return ", ".join(
            method
            for method in _METHOD_ORDER
            if hasattr(cls, "get" if method == "HEAD" else method.lower())
        )

    @property
    def user(self) -> User:
        """The authenticated user (views that allow anonymous callers must not use this)."""
        if self._user is None:
            raise NotAuthenticated
        return self._user

    async def dispatch(self) -> web.StreamResponse:
        """Authenticate, check permissions, then call the method's handler."""
        method = self.request.method
        identity = await identify(self.request) if self.authenticate else None
        self._user = identity.user if identity is not None else None
        self.check_permission(method)
        handler = getattr(self, "get" if method == "HEAD" else method.lower(), None)
        if method not in ROLE_FOR_METHOD or handler is None:
            raise MethodNotAllowed(method)
        response: web.StreamResponse = await handler()
        return response

    def check_permission(self, method: str) -> None:
        """Raise 401/403 unless the caller may use `method` here."""
        if self.allow_anonymous:
            return
        if self._user is None:
            raise NotAuthenticated
        needed = self.needed_permission(method)
        if needed is not None and not self._user.has_admin_permission(needed):
            raise PermissionDenied

    @classmethod
    def needed_permission(cls, method: str) -> str | None:
        """The `admin` ruleset permission `method` needs here, if any."""
        if cls.permission == "admin_role":
            return ROLE_FOR_METHOD.get(method)
        if cls.permission == "model":
            return MODEL_PERMISSION_FOR_METHOD.get(method)
        return None

    def has_permission(self, method: str) -> bool:
        """True when `method` would pass the permission check (for OPTIONS metadata)."""
        try:
            self.check_permission(method)
        except (NotAuthenticated, PermissionDenied):
            return False
        return True

    async def options(self) -> web.StreamResponse:
        """DRF's metadata answer."""
        return drf_json(self.metadata())

    def metadata(self) -> dict[str, Any]:
        """Name, description, renderers and parsers; views backed by a model add `actions`."""
        return view_metadata(self)

    def object_exists(self) -> bool:
        """Whether the object of a detail view exists (OPTIONS describes PUT only then)."""
        return True

    async def read_data(self) -> RequestData:
        """The parsed body: JSON, urlencoded or multipart (DRF's default parsers)."""
        return await read_body(self.request)


async def read_body(request: web.Request) -> RequestData:
    """Parse a request body as DRF does; an empty body is an empty object."""
    if not request.body_exists:
        return RequestData({})
    header = request.headers.get("Content-Type", "")
    media_type = header.split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        raw = await read_bytes(request)
        if not raw:
            return RequestData({})
        try:
            value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError, RecursionError) as err:
            raise ParseError(f"JSON parse error - {err}") from err
        if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
            raise ParseError(
                "JSON parse error - a string holds a lone surrogate (\\ud800-\\udfff), "
                "which is not a Unicode character"
            )
        return RequestData(value)
    if media_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await read_form(request)
        return RequestData({key: form.getall(key)[-1] for key in form}, form=True)
    raw = await read_bytes(request)
    if not raw:
        return RequestData({})
    raise UnsupportedMediaType(header)


async def read_form(
    request: web.Request,
) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """A urlencoded or multipart body; a malformed one is a 400 as DRF words it."""
    try:
        async with _body_deadline():
            return await request.post()
    except web.HTTPException:
        raise
    except (ValueError, LookupError, AssertionError, HttpProcessingError) as err:
        kind = "Multipart form" if request.content_type == "multipart/form-data" else "Form"
        raise ParseError(f"{kind} parse error - {err}") from err


async def read_bytes(request: web.Request) -> bytes:
    """The whole body, within `BODY_TIMEOUT_S` (a client that stalls mid-body is dropped)."""
    async with _body_deadline():
        return await request.read()


@contextlib.asynccontextmanager
async def _body_deadline() -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            yield
    except TimeoutError as err:
        raise RequestTimeout(BODY_TIMEOUT_S) from err


def _has_lone_surrogate(value: Any) -> bool:
    """True when a string anywhere in parsed JSON cannot be encoded (a lone surrogate escape)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def _reject_constant(name: str) -> Any:
    raise ValueError(f"Out of range float values are not JSON compliant: '{name}'")
