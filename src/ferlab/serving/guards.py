"""Who may drive the server: the Host it is addressed by, the page a request comes from, and
(beyond loopback) a token.

A server on 127.0.0.1 is still reachable from every web page the user opens: a page may POST
a form to ``http://127.0.0.1:8000/api/predict`` (no CORS preflight for a form), open a
websocket to it (websockets have no same-origin rule at all), or use DNS rebinding, where
``evil.example`` first resolves to the attacker's server and then to 127.0.0.1, so the page
becomes "same-origin" with ferlab and can read every answer. Three checks stop all of these:

* **Host allowlist** (Starlette's :class:`~starlette.middleware.trustedhost.TrustedHostMiddleware`,
  on HTTP and websocket alike): only the names the server is really addressed by: loopback
  names, the bound address (and, bound to all interfaces, this machine's names and
  addresses), and ``--allowed-host`` for more. A rebinding page's requests carry
  ``Host: evil.example:PORT`` and get a 400.
* **Origin** (:class:`AccessGuard`): a browser sends ``Origin`` with every POST and websocket
  handshake; it must name an allowed host and this server's port. It is compared with the
  allowlist, never with ``Host``, which a rebinding page controls as well. A request without
  ``Origin`` is not from a page (curl, scripts, the load test) and passes, unless the
  browser's ``Sec-Fetch-Site`` says it is cross-site.
* **Token** (:class:`AccessGuard`), required when the server listens beyond loopback (or when
  one is given): ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` on every ``/api`` and
  ``/ws`` request. The page and its static files need none; the page reads the token from
  the URL it was opened with (``/#token=...``: a fragment never reaches the server or its logs).
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_ENV = "FERLAB_SERVE_TOKEN"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Paths anyone who can reach the server may load: the page, its files and the API schema.
# Everything else (the /api endpoints, the live websocket) needs the token when one is set.
OPEN_PATHS = frozenset({"/", "/docs", "/openapi.json", "/favicon.ico"})
OPEN_PREFIXES = ("/static/",)
WS_POLICY = 1008


def host_entry(address: str) -> str:
    """An address as it appears in a Host header: IPv6 literals in brackets, names lower case."""
    address = address.strip().lower()
    if address.startswith("["):
        return address
    try:
        return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
    except ValueError:
        return address


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def machine_hosts() -> list[str]:
    """This machine's names and addresses, for a server bound to all interfaces (best effort:
    a name that does not resolve adds nothing)."""
    names = {socket.gethostname(), socket.getfqdn()}
    found = {n for n in names if n}
    for name in list(found):
        try:
            for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM):
                found.add(str(info[4][0]).split("%", 1)[0])
        except OSError:
            continue
    return sorted(found)


def allowed_hosts_for(bind: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The Host allowlist of a server bound to ``bind``: loopback names, the bound address
    (this machine's names and addresses when bound to all interfaces), then ``extra``."""
    hosts = list(LOOPBACK_HOSTS)
    if bind in ("0.0.0.0", "::", ""):
        hosts += machine_hosts()
    else:
        hosts.append(bind)
    hosts += list(extra)
    out: list[str] = []
    for h in hosts:
        entry = host_entry(h)
        if entry and entry not in out:
            out.append(entry)
    return tuple(out)


def resolve_token(given: str | None, env: dict[str, str], beyond_loopback: bool) -> tuple[str | None, bool]:
    """(token, generated): ``--token``, else ``$FERLAB_SERVE_TOKEN``, else a fresh random one
    when the server listens beyond loopback (else none: loopback is this user's own machine)."""
    token = given or env.get(TOKEN_ENV) or None
    if token is not None:
        return token, False
    if beyond_loopback:
        return secrets.token_urlsafe(24), True
    return None, False


def _matches(host: str, patterns: Sequence[str]) -> bool:
    """TrustedHostMiddleware's rule: an exact name, ``*.example.com`` for subdomains, ``*`` for any."""
    host = host.lower()
    return any(p == "*" or host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)


def _port(netloc_port: int | None, scheme: str) -> int:
    if netloc_port is not None:
        return netloc_port
    return 443 if scheme in ("https", "wss") else 80


@dataclass(frozen=True)
class Access:
    """What :class:`AccessGuard` enforces. ``allowed_hosts``: Host header names (no port);
    ``token``: required on ``/api`` and ``/ws`` when set."""

    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    token: str | None = None

    def origin_allowed(self, origin: str, host_header: str | None, scheme: str = "http") -> bool:
        """A page's Origin: http(s), an allowed host, and the port this server was reached on
        (``host_header``'s, or the default of the connection's ``scheme``)."""
        try:
            parts = urlsplit(origin)
            origin_port = parts.port
            host_port = urlsplit(f"//{host_header}").port if host_header else None
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False  # "null" (sandboxed frames, file: pages) and anything odd
        if not _matches(host_entry(parts.hostname), self.allowed_hosts):
            return False
        return _port(origin_port, parts.scheme) == _port(host_port, scheme)

    def token_ok(self, scope: Scope, headers: Headers) -> bool:
        if self.token is None:
            return True
        given = None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is None:
            values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
            given = values[0] if values else None
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())


def needs_token(path: str) -> bool:
    return not (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES))


class AccessGuard:
    """ASGI middleware: Origin on POST (and other unsafe methods) and websocket handshakes,
    then the token. Refusals are one JSON line (HTTP 403/401) or a websocket closed with
    1008 and the reason, before the app sees the request."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        websocket = scope["type"] == "websocket"
        if websocket or scope.get("method", "GET") not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and not self.access.origin_allowed(origin, headers.get("host"),
                                                                              scope.get("scheme", "http")):
                await self._deny(scope, send, 403, f"cross-origin request refused: origin {origin!r} is not "
                                                   "this server's page (ferlab serve --allowed-host adds hosts)")
                return
            if origin is None and headers.get("sec-fetch-site") == "cross-site":
                await self._deny(scope, send, 403, "cross-site request refused")
                return
        if needs_token(scope.get("path", "")) and not self.access.token_ok(scope, headers):
            await self._deny(scope, send, 401, "this server needs its token: open the URL `ferlab serve` printed "
                                               "(…/#token=…), or send 'Authorization: Bearer TOKEN'")
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _deny(scope: Scope, send: Send, status: int, message: str) -> None:
        if scope["type"] == "websocket":
            # closing before accept: the handshake fails (a 403 to a browser), with the reason
            # for clients that read it (the ASGI close reason is at most 123 bytes)
            await send({"type": "websocket.close", "code": WS_POLICY, "reason": message[:123]})
            return
        body = json.dumps({"detail": message}).encode()
        extra = [(b"www-authenticate", b"Bearer")] if status == 401 else []
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()), *extra]})
        await send({"type": "http.response.body", "body": body})
