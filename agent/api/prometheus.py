"""`/metrics`: the Prometheus text format, to the client networks `[metrics] allow` names.

Not an InvenTree-shaped endpoint (no token, not JSON), so it is outside `/api/` and the OpenAPI
document; scrapers are let in by address, as Prometheus's own exporters are.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agent.api.errors import drf_json
from agent.appkeys import METRICS, SETTINGS
from agent.config import MetricsConfig

ROUTE = "/metrics"


async def metrics_view(request: web.Request) -> web.StreamResponse:
    """The metrics, or 403 to a client outside the allowed networks (404 when turned off)."""
    config = request.app[SETTINGS].metrics
    if not config.enabled:
        return drf_json(
            {"detail": "Metrics are turned off; set [metrics] enabled = true to serve them."},
            status=404,
        )
    if request.method not in ("GET", "HEAD"):
        return drf_json(
            {"detail": f'Method "{request.method}" not allowed.'},
            status=405,
            headers={"Allow": "GET, HEAD"},
        )
    if not allowed(request.remote, config):
        return drf_json(
            {
                "detail": f"Metrics are not served to {request.remote}; add its network to "
                "[metrics] allow in the agent's configuration."
            },
            status=403,
        )
    body = generate_latest(request.app[METRICS].collectors)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def allowed(remote: str | None, config: MetricsConfig) -> bool:
    """True when the client's address is in one of the allowed networks."""
    if remote is None:
        return False
    try:
        address: IPv4Address | IPv6Address = ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in config.networks)
