"""Calls to tenant-named URLs (webhooks): refuse the inside, connect to what was vetted.

A tenant who can make the service send requests can aim them at the service's own network:
a cloud metadata address, a database, an admin port on loopback. So a target URL is checked
twice. When it is *stored*, it must be a plain http(s) URL without control characters,
credentials or odd ports. When it is *called*, its host name is resolved once, every address
it resolves to must be globally routable (``ipaddress``'s ``is_global``, with the IPv4 address
inside IPv4-mapped, 6to4, NAT64 and IPv4-compatible IPv6 addresses checked as well, and
multicast and site-local refused, which Python counts as global), and the connection goes to
that very address: the transport rewrites the request to the vetted IP and keeps the name in
the ``Host`` header and the TLS SNI (and certificate check). A second DNS answer, the trick
behind DNS rebinding, is never asked for.

``allow_private`` (settings: ``WEBHOOK_ALLOW_PRIVATE_NETWORKS``) lifts the address rule for
development, where receivers run on loopback or a private network; the URL rules stay.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

import httpx

Resolver = Callable[[str, int], list[str]]
"""Host name and port -> the addresses to consider (what ``getaddrinfo`` answers)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2000
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class TargetRefused(ValueError):
    """The URL or the address it resolves to may not be called; ``str()`` says why."""


class MalformedURL(TargetRefused):
    """The URL itself breaks the rules (scheme, host, credentials, characters, port)."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TargetRefused(f"{host} does not resolve ({exc})") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_url(url: str) -> SplitResult:
    """The rules for a stored target URL, with no network access: http(s), a host, no
    credentials, no whitespace or control characters anywhere (a CR/LF in a URL is a header
    injection waiting for a careless client), a valid port."""
    if len(url) > MAX_URL_LENGTH:
        raise MalformedURL(f"the URL is longer than {MAX_URL_LENGTH} characters")
    bad = next((c for c in url if c.isspace() or not c.isprintable()), None)
    if bad is not None:
        raise MalformedURL(f"the URL contains a control or whitespace character ({bad!r})")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise MalformedURL("only http and https URLs can be called")
    if not parts.hostname:
        raise MalformedURL("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise MalformedURL("the URL carries credentials; sign requests with the secret instead")
    try:
        port = parts.port
    except ValueError as exc:
        raise MalformedURL(f"the URL's port is invalid ({exc})") from exc
    if port == 0:
        raise MalformedURL("the URL's port is invalid (0)")
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise MalformedURL(f"the URL is invalid ({exc})") from exc
    return parts


def why_not_global(address: IPAddress) -> str | None:
    """None for an address on the public internet; otherwise what it is."""
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv6Address):
        if address.is_site_local:
            return "site-local"
        for embedded in _embedded_ipv4(address):
            reason = why_not_global(embedded)
            if reason is not None:
                return f"{reason} (embedded {embedded})"
    if not address.is_global:
        return "not globally routable"
    return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    found = [address.ipv4_mapped, address.sixtofour]
    if address.teredo is not None:
        found.extend(address.teredo)
    if any(address in network for network in _NAT64) or address in _IPV4_COMPATIBLE:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [ip for ip in found if ip is not None]


@dataclass(frozen=True)
class OutboundPolicy:
    """Which addresses outbound requests may reach, and how names are resolved."""

    allow_private: bool = False
    resolver: Resolver = field(default=system_resolver)

    def vet(self, host: str, port: int) -> str:
        """Resolve ``host`` once; return the address to connect to, or raise TargetRefused."""
        literal = _literal(host)
        addresses = [str(literal)] if literal is not None else self.resolver(host, port)
        if not addresses:
            raise TargetRefused(f"{host} does not resolve")
        for text in addresses:
            address = _literal(text)
            if address is None:
                raise TargetRefused(f"{host} resolved to something that is not an address")
            reason = None if self.allow_private else why_not_global(address)
            if reason is not None:
                raise TargetRefused(
                    f"{host} resolves to {address}, which is {reason}; webhooks may only "
                    "call addresses on the public internet"
                )
        return addresses[0]

    def check(self, url: str) -> None:
        """The URL rules, then the address rules (one resolution), for a URL being stored."""
        parts = check_url(url)
        self.vet(parts.hostname or "", parts.port or _default_port(parts.scheme))


def _literal(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


class VettedTransport(httpx.BaseTransport):
    """An httpx transport that connects only to the address ``policy.vet`` returned.

    The request's URL host is replaced by the vetted IP; httpx already wrote the ``Host``
    header from the original URL, and for https the original name travels as the SNI
    (``sni_hostname``), which is also the name the certificate is checked against.
    """

    def __init__(self, policy: OutboundPolicy, inner: httpx.BaseTransport) -> None:
        self.policy, self.inner = policy, inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        check_url(str(request.url))
        address = self.policy.vet(host, request.url.port or _default_port(request.url.scheme))
        if address != host:
            request.url = request.url.copy_with(host=address)
            if request.url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": host}
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def vetted_client(policy: OutboundPolicy, timeout: float, verify: object = True) -> httpx.Client:
    """A client for one tenant-named call: no redirects (a redirect is a new, unvetted target),
    no proxies from the environment, no connection reuse across names."""
    inner = httpx.HTTPTransport(verify=verify, trust_env=False)  # type: ignore[arg-type]
    return httpx.Client(
        transport=VettedTransport(policy, inner),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )
