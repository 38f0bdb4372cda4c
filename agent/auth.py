"""Users, passwords, API tokens and sessions, and the role rules of InvenTree's `admin` ruleset.

Passwords are hashed with scrypt (a slow KDF, run in a thread); tokens and session keys are stored
as SHA-256 digests, so a copy of the database gives no working credential.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import os
import secrets
import string
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from agent.login_limits import LoginLimiter
from agent.storage.auth import AuthStore, SessionRow, TokenRow, UserRow
from agent.storage.errors import StoreRefused

T = TypeVar("T")

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"view", "add", "change", "delete"}),
    "view": frozenset({"view"}),
    "none": frozenset(),
}
# InvenTree's rulesets, in its order; the agent only has machines, which belong to `admin`.
RULESETS = (
    "admin",
    "part_category",
    "part",
    "stocktake",
    "stock_location",
    "stock",
    "build",
    "purchase_order",
    "sales_order",
    "return_order",
)
PERMISSION_ORDER = ("view", "add", "change", "delete")

TOKEN_LIFETIME = dt.timedelta(days=365)
# Tokens expired or revoked longer ago than this are deleted (checked at every start).
TOKEN_PRUNE_AFTER = dt.timedelta(days=30)
SECRET_BYTES = 32
SESSION_LIFETIME = dt.timedelta(days=14)
# A verified token is trusted from memory this long; a token revoked in the database stops
# working at most this much later.
TOKEN_CACHE_SECONDS = 60.0

# scrypt cost: 2**14 x 8 takes about 50 ms and 16 MiB on a Raspberry Pi 4 class CPU.
_SCRYPT_N = 2**14
_SCRYPT_R = 8
_SCRYPT_P = 1
_CSRF_CHARS = string.ascii_letters + string.digits
CSRF_SECRET_LENGTH = 32


class AuthenticationFailed(Exception):
    """Credentials were given but are not valid; the message is InvenTree's `detail`."""


@dataclass(frozen=True, slots=True)
class User:
    """An authenticated user."""

    pk: int
    username: str
    is_superuser: bool
    is_staff: bool
    role: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""

    @classmethod
    def from_row(cls, row: UserRow) -> User:
        """The user of a database row."""
        return cls(
            pk=row.pk,
            username=row.username,
            is_superuser=row.is_superuser,
            is_staff=row.is_staff,
            role=row.role,
            first_name=row.first_name,
            last_name=row.last_name,
            email=row.email,
        )

    def has_admin_permission(self, permission: str) -> bool:
        """True when this user may `view`/`add`/`change`/`delete` machines and their settings."""
        return self.is_superuser or permission in ROLE_PERMISSIONS.get(self.role, frozenset())

    def admin_permissions(self) -> list[str]:
        """Granted permissions on the `admin` ruleset, in InvenTree's order."""
        return [p for p in PERMISSION_ORDER if self.has_admin_permission(p)]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token key handed to a client and its expiry date (ISO), as stored."""

    key: str
    expiry: str


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a request and how."""

    user: User
    method: str  # "token", "basic" or "session"
    session: SessionRow | None = None


# passwords


def hash_password(password: str) -> str:
    """A salted scrypt hash, self-describing (`scrypt$n$r$p$salt$hash`). Slow: call in a thread."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P)
    return "$".join(
        ("scrypt", str(_SCRYPT_N), str(_SCRYPT_R), str(_SCRYPT_P), _b64(salt), _b64(digest))
    )


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against its stored hash in constant time. Slow: call in a thread."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        if scheme != "scrypt":
            return False
        candidate = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
        return hmac.compare_digest(candidate, base64.b64decode(digest))
    except (ValueError, binascii.Error):
        return False


# tokens and sessions


def derive_token_key(secret: bytes, salt: str) -> str:
    """A token key in InvenTree's format (`inv-<40 hex>-<YYYYMMDD>`) from its salt (`<hex>-<date>`).

    Only the key's hash is stored; the agent's secret and the salt make it again when a client asks
    for the token of the same name.
    """
    nonce, _, date = salt.rpartition("-")
    mac = hmac.new(secret, nonce.encode(), hashlib.sha256).hexdigest()
    return f"inv-{mac[:40]}-{date}"


def load_or_create_secret(path: Path) -> bytes:
    """The agent's secret (32 random bytes, file mode 0600), made on first use. Blocking."""
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = secrets.token_bytes(SECRET_BYTES)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(secret)
            file.flush()
            os.fsync(file.fileno())
        return secret
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"{path} is damaged: it holds {len(secret)} bytes, not {SECRET_BYTES}")
    return secret


def digest(secret: str) -> str:
    """The stored form of a token key or session key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_csrf_secret() -> str:
    """A CSRF secret as Django makes it: 32 letters and digits."""
    return "".join(secrets.choice(_CSRF_CHARS) for _ in range(CSRF_SECRET_LENGTH))


def csrf_failure(cookie: str | None, header: str | None) -> str | None:
    """Django's reason for rejecting an unsafe session request, or None when the token matches."""
    if not cookie:
        return "CSRF cookie not set."
    if len(cookie) not in (CSRF_SECRET_LENGTH, 2 * CSRF_SECRET_LENGTH):
        return "CSRF cookie has incorrect length."
    if any(char not in _CSRF_CHARS for char in cookie):
        return "CSRF cookie has invalid characters."
    if header is None:
        return "CSRF token missing."
    if len(header) not in (CSRF_SECRET_LENGTH, 2 * CSRF_SECRET_LENGTH):
        return "CSRF token from the 'X-Csrftoken' HTTP header has incorrect length."
    if any(char not in _CSRF_CHARS for char in header):
        return "CSRF token from the 'X-Csrftoken' HTTP header has invalid characters."
    secret = _unmask(header) if len(header) == 2 * CSRF_SECRET_LENGTH else header
    cookie_secret = _unmask(cookie) if len(cookie) == 2 * CSRF_SECRET_LENGTH else cookie
    if not hmac.compare_digest(secret, cookie_secret):
        return "CSRF token from the 'X-Csrftoken' HTTP header incorrect."
    return None


class Authenticator:
    """Resolves credentials to users: `Token`, then `Basic`, then the session cookie."""

    def __init__(self, store: AuthStore, secret_path: Path) -> None:
        self.store = store
        self.secret_path = secret_path
        self._secret_key: bytes | None = None
        # Set at start when the clock is behind stored dates: new tokens date from here instead.
        self.not_before: dt.date | None = None
        self._token_cache: dict[str, tuple[float, TokenRow, User]] = {}
        self.login_limiter = LoginLimiter()

    async def from_authorization(self, header: str, source: str | None = None) -> Identity | None:
        """The identity for an `Authorization` header, None if it is neither Token nor Basic.

        `source` is the client's address, for the limits on failed password attempts.
        """
        parts = header.split()
        if not parts:
            return None
        keyword = parts[0].lower()
        if keyword == "token":
            if len(parts) == 1:
                raise AuthenticationFailed("Invalid token header. No credentials provided.")
            if len(parts) > 2:
                raise AuthenticationFailed(
                    "Invalid token header. Token string should not contain spaces."
                )
            return Identity(await self.user_for_token(parts[1]), "token")
        if keyword == "basic":
            if len(parts) == 1:
                raise AuthenticationFailed("Invalid basic header. No credentials provided.")
            if len(parts) > 2:
                raise AuthenticationFailed(
                    "Invalid basic header. Credentials string should not contain spaces."
                )
            username, password = _decode_basic(parts[1])
            return Identity(await self.user_for_password(username, password, source), "basic")
        return None

    async def user_for_token(self, key: str) -> User:
        """The active user owning a valid token key."""
        key_hash = digest(key)
        now = time.monotonic()
        cached = self._token_cache.get(key_hash)
        if cached is not None and cached[0] > now:
            return cached[2]
        token = await self.store.get_token(key_hash)
        if token is None:
            raise AuthenticationFailed("Invalid token.")
        if token.revoked:
            raise AuthenticationFailed("Token has been revoked")
        today = dt.date.today()  # noqa: DTZ011 - token expiry dates are local dates, as InvenTree's
        if dt.date.fromisoformat(token.expiry) < today:
            raise AuthenticationFailed("Token has expired")
        row = await self.store.get_user(pk=token.user)
        if row is None or not row.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        if token.last_seen != today.isoformat():
            await self.store.touch_token(token.pk, today.isoformat())
        user = User.from_row(row)
        self._token_cache[key_hash] = (now + TOKEN_CACHE_SECONDS, token, user)
        return user

    async def user_for_password(
        self, username: str, password: str, source: str | None = None
    ) -> User:
        """The active user with these credentials.

        Raises LoginThrottled, before any hashing, when `source` or the user has failed too often.
        """
        per_user = self.login_limiter.begin(source, username)
        user = await self._check_password(username, password)
        self.login_limiter.succeeded(source, username, per_user=per_user)
        return user

    async def _check_password(self, username: str, password: str) -> User:
        row = await self.store.get_user(username=username)
        if row is None:
            # Spend the same time as a real check, so usernames cannot be probed by timing.
            await _run_kdf(lambda: verify_password(password, _dummy_hash()))
            raise AuthenticationFailed("Invalid username/password.")
        if not await _run_kdf(lambda: verify_password(password, row.password_hash)):
            raise AuthenticationFailed("Invalid username/password.")
        if not row.is_active:
            # Django refuses inactive users before DRF looks: the same answer as a wrong password.
            raise AuthenticationFailed("Invalid username/password.")
        return User.from_row(row)

    async def from_session(self, session_key: str) -> Identity | None:
        """The identity of a live session cookie, None if unknown or expired."""
        session = await self.store.get_session(digest(session_key))
        if session is None or session.expires < _now_iso():
            return None
        row = await self.store.get_user(pk=session.user)
        if row is None or not row.is_active:
            return None
        return Identity(User.from_row(row), "session", session)

    async def start_session(self, user: User) -> tuple[str, str]:
        """Log a user in: returns (session key, CSRF secret) for the cookies."""
        key = secrets.token_urlsafe(32)
        csrf = new_csrf_secret()
        expires = (dt.datetime.now(dt.UTC) + SESSION_LIFETIME).isoformat()
        await self.store.delete_expired_sessions(_now_iso())
        await self.store.insert_session(SessionRow(digest(key), user.pk, csrf, expires))
        return key, csrf

    async def revoke(self, key: str) -> None:
        """Revoke a token at once (also in this process's cache)."""
        key_hash = digest(key)
        self._token_cache.pop(key_hash, None)
        await self.store.revoke_token(key_hash)

    async def end_session(self, session_key: str) -> None:
        """Log a session out."""
        await self.store.delete_session(digest(session_key))

    async def token_for(self, user: User, name: str, *, reuse: bool = True) -> str:
        """A token key for `user`: as InvenTree, the live one of this name if any, else a new one."""
        return (await self.issue_token(user, name, reuse=reuse)).key

    async def issue_token(self, user: User, name: str, *, reuse: bool = True) -> IssuedToken:
        """`token_for`, with the expiry date stored for the token handed out."""
        secret = await self._secret()
        today = dt.date.today()  # noqa: DTZ011 - local dates, as InvenTree
        if self.not_before is not None and today < self.not_before:
            today = self.not_before
        if reuse:
            existing = await self.store.reusable_token(user.pk, name, today.isoformat())
            if existing is not None and existing.salt is not None:
                key = derive_token_key(secret, existing.salt)
                # A replaced secret.key derives other keys: then make a new token instead.
                if hmac.compare_digest(digest(key), existing.key_hash):
                    return IssuedToken(key, existing.expiry)
        salt = f"{secrets.token_hex(16)}-{today.strftime('%Y%m%d')}"
        key = derive_token_key(secret, salt)
        expiry = (today + TOKEN_LIFETIME).isoformat()
        await self.store.insert_token(
            TokenRow(
                pk=0,
                user=user.pk,
                name=name,
                key_hash=digest(key),
                key_hint=f"{key[:8]}...{key[-12:]}",
                expiry=expiry,
                revoked=False,
                created=_now_iso(),
                last_seen=None,
                salt=salt,
            )
        )
        return IssuedToken(key, expiry)

    async def prune(self) -> int:
        """Forget tokens expired or revoked more than `TOKEN_PRUNE_AFTER` ago, and old sessions."""
        cutoff = dt.date.today() - TOKEN_PRUNE_AFTER  # noqa: DTZ011 - local dates, as InvenTree
        await self.store.delete_expired_sessions(_now_iso())
        return await self.store.prune_tokens(cutoff.isoformat())

    async def load_secret(self) -> None:
        """Read (or on first start make) the secret at start: a damaged one is a StoreRefused."""
        try:
            await self._secret()
        except (ValueError, OSError) as err:
            raise StoreRefused(
                f"{err}. Restore it from a backup; or delete it and start again, after which every "
                "API token handed out so far stops working"
            ) from err

    async def _secret(self) -> bytes:
        if self._secret_key is None:
            self._secret_key = await asyncio.to_thread(load_or_create_secret, self.secret_path)
        return self._secret_key


async def create_user(
    store: AuthStore,
    username: str,
    password: str,
    *,
    superuser: bool = False,
    role: str = "view",
    email: str = "",
) -> UserRow:
    """Add a user with a hashed password; raises DuplicateUsername if the name is taken."""
    if role not in ROLE_PERMISSIONS:
        raise ValueError(f"unknown role '{role}' (choose from {', '.join(ROLE_PERMISSIONS)})")
    password_hash = await _run_kdf(lambda: hash_password(password))
    return await store.insert_user(
        UserRow(
            pk=0,
            username=username,
            password_hash=password_hash,
            is_superuser=superuser,
            is_staff=superuser,
            is_active=True,
            role="admin" if superuser else role,
            first_name="",
            last_name="",
            email=email,
            date_joined=_now_iso(),
        )
    )


async def ensure_superuser(store: AuthStore, username: str, password: str, email: str = "") -> bool:
    """Create the bootstrap superuser unless a user of that name exists; True if created."""
    if await store.get_user(username=username) is not None:
        return False
    await create_user(store, username, password, superuser=True, email=email)
    return True


# scrypt needs 16 MiB per call; glibc keeps such a buffer in each thread's arena afterwards, so
# every KDF runs on this one thread: at most 16 MiB stay resident, whatever the request rate.
_KDF_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kdf")


async def _run_kdf(call: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_KDF_EXECUTOR, call)


def _decode_basic(encoded: str) -> tuple[str, str]:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error as err:
        raise AuthenticationFailed(
            "Invalid basic header. Credentials not correctly base64 encoded."
        ) from err
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        # What `requests` (and so InvenTree's Python client) sends for non-ASCII passwords.
        decoded = raw.decode("latin-1")
    username, sep, password = decoded.partition(":")
    if not sep:
        raise AuthenticationFailed(
            "Invalid basic header. Credentials not correctly base64 encoded."
        )
    return username, password


def _unmask(token: str) -> str:
    """Django's CSRF token unmasking: the first half is the mask, the second the masked secret."""
    mask, masked = token[:CSRF_SECRET_LENGTH], token[CSRF_SECRET_LENGTH:]
    size = len(_CSRF_CHARS)
    return "".join(
        _CSRF_CHARS[(_CSRF_CHARS.index(c) - _CSRF_CHARS.index(m)) % size]
        for c, m in zip(masked, mask, strict=True)
    )


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(8))
