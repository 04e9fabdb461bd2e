"""`mempool-whale-exporter healthcheck`: does the exporter on this host answer? For containers.

It reads the same settings as `run` (flags and `WHALE_*` variables), so it knows the port and,
from the web config, whether TLS and basic auth are on. Healthy: `/healthz` answers 200, or 401
when basic auth is on (the check holds no password; the server answering is what it proves).
With client certificates required it cannot complete a request, so a TCP connection is enough.
The certificate is not verified: the check talks to loopback, which its name rarely covers.
"""

from __future__ import annotations

import socket

import httpx

from exporter.config import Settings
from exporter.shell.http import webconfig

TIMEOUT = 4.0  # below Docker's default healthcheck timeout (30 s) and the compose one (5 s)
ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def problem(settings: Settings, timeout: float = TIMEOUT) -> str | None:
    """Why the local exporter is not healthy, or None when it is."""
    web = webconfig.load(settings.web_config_file)
    host = ANY_ADDRESS.get(settings.host, settings.host)
    if web.tls is not None and web.tls.client_auth_type == "RequireAndVerifyClientCert":
        try:
            socket.create_connection((host, settings.port), timeout).close()
        except OSError as exc:
            return f"{host}:{settings.port}: {exc.strerror or type(exc).__name__}"
        return None
    scheme = "https" if web.tls is not None else "http"
    url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{settings.port}/healthz"
    try:
        status = httpx.get(url, timeout=timeout, verify=False).status_code
    except httpx.HTTPError as exc:
        return f"{url}: {type(exc).__name__}"
    if status == 200 or (status == 401 and web.users):
        return None
    return f"{url}: HTTP {status}"
