"""Agent users on a real InvenTree server, created once per server through its `manage shell`.

InvenTree 303 has no API to set a password or a group, so the test users are made the way an
administrator's script would make them: users, the agents group and fixed API tokens.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

AGENT_GROUP = "edge-agents"
TOKEN_SUFFIX = "0123456789abcdef0123456789abcdef01234567-20250101"
# user name -> (API token, member of the agents group)
USERS = {
    "edge-agent-a": (f"inv-edge-agent-a-{TOKEN_SUFFIX}", True),
    "edge-agent-b": (f"inv-edge-agent-b-{TOKEN_SUFFIX}", True),
    "edge-outsider": (f"inv-edge-outsider-{TOKEN_SUFFIX}", False),
}

_SCRIPT = """
import datetime
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from users.models import ApiToken

group, _ = Group.objects.get_or_create(name={group!r})
for name, (key, member) in {users!r}.items():
    user, _ = get_user_model().objects.get_or_create(username=name)
    user.is_active = True
    user.save()
    try:  # current InvenTree: 'manage shell' skips the signal that creates the profile
        from users.models import UserProfile
        UserProfile.objects.get_or_create(user=user)
    except ImportError:
        pass
    if member:
        user.groups.add(group)
    else:
        user.groups.remove(group)
    ApiToken.objects.filter(key=key).exclude(user=user).delete()
    token, _ = ApiToken.objects.get_or_create(key=key, defaults={{"user": user}})
    token.user = user
    token.name = "edge-test"
    token.expiry = datetime.date(2099, 12, 31)
    if hasattr(token, "revoked"):
        token.revoked = False
    token.save()
print("edge-users-ok")
"""


def create(server_dir: Path, timeout: float = 120) -> None:
    """Create (idempotently) the test users, group and tokens on the server in `server_dir`."""
    script = _SCRIPT.format(group=AGENT_GROUP, users=USERS)
    result = subprocess.run(  # noqa: S603 - the server's own manage wrapper
        [str(server_dir / "manage"), "shell", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if "edge-users-ok" not in result.stdout:
        raise RuntimeError(f"creating agent users failed: {result.stderr[-2000:]}")


def token(name: str) -> str:
    return USERS[name][0]
