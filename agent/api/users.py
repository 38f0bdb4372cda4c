"""Users and credentials: `/api/user/token/`, `/api/user/me/`, `/api/user/roles/`, `/api/auth/login|logout/`."""

from __future__ import annotations

import datetime
import re
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import Field

from agent.api.declare import Answer, ApiModel, Doc, Endpoint, Operation, query_parameter
from agent.api.errors import Throttled, ValidationFailed, drf_json
from agent.api.fields import expect_object
from agent.api.views import ApiView, identify
from agent.appkeys import AUTHENTICATOR
from agent.auth import RULESETS, SESSION_LIFETIME, AuthenticationFailed, User
from agent.login_limits import LoginThrottled

TOKEN_NAME_MAX = 100
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_HTML_TAG = re.compile(r"<[^>]*>")
Permission = Literal["view", "add", "change", "delete"]


class AuthToken(ApiModel):
    """An API token (`Authorization: Token <token>`) and when it expires."""

    token: str
    name: str
    expiry: datetime.date


class Login(ApiModel):
    """Credentials to log in with."""

    username: Annotated[str, Field(min_length=1)]
    password: Annotated[str, Field(min_length=1), Doc(write_only=True)]


class Token(ApiModel):
    """The API token made by a login."""

    key: str


class MeUser(ApiModel):
    """The current user."""

    pk: Annotated[int, Doc(read_only=True)]
    username: str
    first_name: str
    last_name: str
    email: str
    groups: list[Any]
    is_staff: bool
    is_superuser: bool
    is_active: bool


class Role(ApiModel):
    """The current user's role permissions, per InvenTree ruleset (machines are `admin`)."""

    user: int
    username: str
    roles: dict[str, list[Permission] | None]
    permissions: dict[str, list[Permission]]
    is_staff: bool
    is_superuser: bool


class RestAuthDetail(ApiModel):
    """A confirmation message."""

    detail: Annotated[str, Doc(read_only=True)]


def clean_token_name(raw: str) -> str:
    """InvenTree's token label cleaning: strip, no HTML or control characters, spaces to '-'."""
    name = _CONTROL_CHARS.sub("", _HTML_TAG.sub("", raw.strip()))
    return re.sub(r"\s", "-", name)[:TOKEN_NAME_MAX]


async def _log_in(request: web.Request, response: web.StreamResponse, user: User) -> None:
    """Start a session and set InvenTree's cookies (`sessionid`, `csrftoken`)."""
    session_key, csrf = await request.app[AUTHENTICATOR].start_session(user)
    max_age = int(SESSION_LIFETIME.total_seconds())
    response.set_cookie("sessionid", session_key, max_age=max_age, httponly=True, samesite="Lax")
    response.set_cookie("csrftoken", csrf, max_age=max_age, samesite="Lax")


class GetAuthToken(ApiView):
    """Return an API token if the user is authenticated."""

    endpoint = Endpoint(
        "/api/user/token/",
        name="Get Auth Token",
        description=(
            "Return an API token if the user is authenticated.\n\n"
            "- The user's live token of the same name is returned again, else a new one is made"
        ),
        operations=(
            Operation(
                "GET",
                "user_token_retrieve",
                "Return an API token if the user is authenticated.\n\n"
                "- The user's live token of the same name is returned again, else a new one is "
                "made (only a hash of each key is stored)\n"
                "- Also logs the caller in with a session (cookies `sessionid`, `csrftoken`)",
                tag="user",
                parameters=(query_parameter("name", {"type": "string"}, "Label of the token."),),
                answers=(Answer(200, AuthToken),),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """The token named by `?name=` (reused while live); also logs the caller in with a session."""
        name = clean_token_name(self.request.query.get("name", ""))
        token = await self.request.app[AUTHENTICATOR].issue_token(self.user, name)
        response = drf_json({"token": token.key, "name": name, "expiry": token.expiry})
        identity = await identify(self.request)
        if identity is not None and identity.method != "session":
            await _log_in(self.request, response, self.user)
        return response


def user_json(user: User) -> dict[str, Any]:
    """InvenTree's MeUserSerializer representation."""
    return {
        "pk": user.pk,
        "username": user.username,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "groups": [],
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "is_active": True,
    }


class MeUserDetail(ApiView):
    """Detail endpoint for the current user."""

    endpoint = Endpoint(
        "/api/user/me/",
        name="Me User Detail",
        description="Detail endpoint for the current user.",
        operations=(
            Operation(
                "GET",
                "user_me_retrieve",
                "Detail endpoint for the current user.",
                tag="user",
                answers=(Answer(200, MeUser),),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """The calling user."""
        return drf_json(user_json(self.user))


class RoleDetails(ApiView):
    """API endpoint which lists the available role permissions for the current user."""

    endpoint = Endpoint(
        "/api/user/roles/",
        name="Role Details",
        description="API endpoint which lists the available role permissions for the current user.",
        operations=(
            Operation(
                "GET",
                "user_roles_retrieve",
                "API endpoint which lists the available role permissions for the current user.",
                tag="user",
                answers=(Answer(200, Role),),
            ),
        ),
    )

    async def get(self) -> web.StreamResponse:
        """Per-ruleset permissions; the agent's machines belong to `admin`."""
        user = self.user
        roles: dict[str, list[str] | None] = {}
        for ruleset in RULESETS:
            if user.is_superuser:
                roles[ruleset] = ["view", "add", "change", "delete"]
            elif ruleset == "admin":
                roles[ruleset] = user.admin_permissions() or None
            else:
                roles[ruleset] = None
        granted = sorted(
            p for p in ("add", "change", "delete", "view") if user.has_admin_permission(p)
        )
        permissions = {"machineconfig": granted, "machinesetting": granted} if granted else {}
        return drf_json(
            {
                "user": user.pk,
                "username": user.username,
                "roles": roles,
                "permissions": permissions,
                "is_staff": user.is_staff,
                "is_superuser": user.is_superuser,
            }
        )


class LoginView(ApiView):
    """Log in with a username and password: a token, and a session."""

    allow_anonymous = True
    authenticate = False
    endpoint = Endpoint(
        "/api/auth/login/",
        name="Login",
        description="Log in with a username and password; answers an API token and sets a session.",
        operations=(
            Operation(
                "POST",
                "auth_login_create",
                "Log in with a username and password; answers an API token and sets a session.",
                tag="auth",
                request=Login,
                answers=(Answer(200, Token),),
                errors=(429,),
            ),
        ),
    )

    async def post(self) -> web.StreamResponse:
        """`{"username", "password"}` -> `{"key": token}` plus session cookies."""
        data = expect_object((await self.read_data()).value)
        username, password = data.get("username"), data.get("password")
        # dj-rest-auth refuses a blank username or password before it tries them.
        if (
            not isinstance(username, str)
            or not isinstance(password, str)
            or not username
            or not password
        ):
            raise ValidationFailed(
                {"non_field_errors": ['Must include "username" and "password".']}
            )
        authenticator = self.request.app[AUTHENTICATOR]
        try:
            user = await authenticator.user_for_password(username, password, self.request.remote)
        except LoginThrottled as err:
            raise Throttled(err.retry_after_s) from err
        except AuthenticationFailed as err:
            raise ValidationFailed(
                {"non_field_errors": ["Unable to log in with provided credentials."]}
            ) from err
        key = await authenticator.token_for(user, "")
        response = drf_json({"key": key})
        await _log_in(self.request, response, user)
        return response


class Logout(ApiView):
    """Log out: revoke the token used, end the session."""

    endpoint = Endpoint(
        "/api/auth/logout/",
        name="Logout",
        description="Log out: revoke the token used for this request and end the session.",
        operations=(
            Operation(
                "POST",
                "auth_logout_create",
                "Log out: revoke the token used for this request and end the session.",
                tag="auth",
                answers=(Answer(200, RestAuthDetail),),
            ),
        ),
    )

    async def post(self) -> web.StreamResponse:
        """Revoke and forget the caller's credentials."""
        authenticator = self.request.app[AUTHENTICATOR]
        header = self.request.headers.get("Authorization", "").split()
        if len(header) == 2 and header[0].lower() == "token":
            await authenticator.revoke(header[1])
        session_key = self.request.cookies.get("sessionid")
        if session_key:
            await authenticator.end_session(session_key)
        response = drf_json({"detail": "Successfully logged out."})
        response.del_cookie("sessionid")
        return response
