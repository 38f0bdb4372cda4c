"""API errors in InvenTree's (DRF's) shapes, rendered by one middleware."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pydantic_core
import structlog
from aiohttp import web

from agent.log_limits import RepeatLimiter
from agent.storage.errors import StorageFault, StoreError

log = structlog.get_logger(__name__)
# Unexpected failures can repeat for every request (a full disk, no file descriptors left).
_failures_logged = RepeatLimiter(times=5, interval_s=60.0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def drf_json(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer as DRF renders it: compact, `Content-Type: application/json` exactly."""
    # pydantic-core's encoder (already a dependency) writes DRF's compact form a third faster.
    body = pydantic_core.to_json(data)
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def django_json(data: Any, status: int = 200) -> web.Response:
    """A JSON answer as Django's JsonResponse renders it (spaces after separators)."""
    body = json.dumps(data).encode()
    return web.Response(body=body, status=status, content_type="application/json")


class ApiError(Exception):
    """An error answer: status code and DRF-style body."""

    status = 400

    def __init__(self, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        super().__init__(body)
        self.body = dict(body)
        self.headers = headers

    def response(self) -> web.Response:
        """The answer to send."""
        return drf_json(self.body, status=self.status, headers=self.headers)


class ValidationFailed(ApiError):
    """400 with `{"field": ["message", ...]}`."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        super().__init__(errors)


class ParseError(ApiError):
    """400 with a `detail` (malformed body)."""

    def __init__(self, detail: str) -> None:
        super().__init__({"detail": detail})


class NotAuthenticated(ApiError):
    """401: no credentials on a protected endpoint."""

    status = 401

    def __init__(self, detail: str = "Authentication credentials were not provided.") -> None:
        # DRF names its first authenticator's scheme; for InvenTree that is Token.
        super().__init__({"detail": detail}, headers={"WWW-Authenticate": "Token"})


class PermissionDenied(ApiError):
    """403."""

    status = 403

    def __init__(self, detail: str = "You do not have permission to perform this action.") -> None:
        super().__init__({"detail": detail})


class NotFound(ApiError):
    """404 with a `detail`."""

    status = 404

    def __init__(self, detail: str = "Not found.") -> None:
        super().__init__({"detail": detail})


class MethodNotAllowed(ApiError):
    """405, after authentication and permissions, as DRF orders it."""

    status = 405

    def __init__(self, method: str) -> None:
        super().__init__({"detail": f'Method "{method}" not allowed.'})


class Conflict(ApiError):
    """409 with a `detail`."""

    status = 409

    def __init__(self, detail: str) -> None:
        super().__init__({"detail": detail})


class RequestTimeout(ApiError):
    """408: the body did not arrive in time."""

    status = 408

    def __init__(self, seconds: float) -> None:
        super().__init__({"detail": f"The request body did not arrive within {seconds:g} s."})


class PayloadTooLarge(ApiError):
    """413: the body is over the configured limit."""

    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__({"detail": f"Request body is larger than the limit of {limit} bytes."})


class Throttled(ApiError):
    """429 as DRF's throttling answers it, with `Retry-After`."""

    status = 429

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            {"detail": f"Request was throttled. Expected available in {retry_after_s} seconds."},
            headers={"Retry-After": str(retry_after_s)},
        )


class UnsupportedMediaType(ApiError):
    """415."""

    status = 415

    def __init__(self, media_type: str) -> None:
        super().__init__({"detail": f'Unsupported media type "{media_type}" in request.'})


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into InvenTree's error body; never leak a traceback."""
    try:
        return await handler(request)
    except ApiError as err:
        return err.response()
    except web.HTTPRequestEntityTooLarge:
        return PayloadTooLarge(request.client_max_size).response()
    except web.HTTPException as err:
        if err.status < 400:
            raise
        return drf_json({"detail": err.reason}, status=err.status)
    except StoreError as err:
        # Nothing was saved (or, after a timeout, maybe saved): the client may try again later.
        fields = _failures_logged.check((type(err), str(err)))
        if fields is not None:
            log.error(  # noqa: TRY400 - the message says it all; no traceback
                "storage_failed", method=request.method, path=request.path, error=str(err), **fields
            )
        status = 507 if isinstance(err, StorageFault) and err.disk_full else 503
        return drf_json({"detail": str(err)}, status=status)
    except Exception as err:
        fields = _failures_logged.check((type(err), str(err)))
        if fields is not None:
            log.exception("request_failed", method=request.method, path=request.path, **fields)
        return drf_json(
            {
                "error": type(err).__name__,
                "error_class": str(type(err)),
                "detail": "Error details can be found in the admin panel",
                "path": request.path,
                "status_code": 500,
            },
            status=500,
        )
