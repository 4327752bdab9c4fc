"""Where a notification may go: the SSRF guard (http/https only, public addresses only).

A job's ``notify.url`` is chosen by the team, and the deliverer runs inside the platform's network, so a URL
naming a private, loopback, link-local or reserved address (the cloud metadata service at 169.254.169.254,
a database on 10.0.0.5, ``http://2130706433/`` = 127.0.0.1) would let a team probe or call it. Every
address a host resolves to is checked with the standard library's ``ipaddress``; IPv6 forms that carry an
IPv4 address (mapped, 6to4, Teredo, NAT64) are judged by that IPv4 address too. The check runs at submit
and again at every send, and the request then goes to the very address that was checked, so a DNS answer
that changes in between (rebinding) cannot redirect it. ``GKD_NOTIFY_ALLOW_PRIVATE=1`` turns the address
check off (a receiver on the same host or network, tests).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SCHEMES = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(ValueError):
    """The URL may not be called: wrong scheme, credentials in it, or a non-public address."""


class ResolutionFailed(OSError):
    """The host name did not resolve (may be transient: DNS down)."""


@dataclass(frozen=True)
class Target:
    """A checked destination: the URL's parts and the addresses a request may connect to (all checked)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]

    def pinned_url(self, address: IPAddress) -> str:
        """The URL with its host replaced by ``address`` (the Host header and TLS SNI keep the name)."""
        host = f"[{address}]" if address.version == 6 else str(address)
        return urlsplit(self.url)._replace(netloc=f"{host}:{self.port}").geturl()

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if SCHEMES[self.scheme] == self.port else f"{host}:{self.port}"


def url_problem(url: str) -> str | None:
    """What is wrong with the URL's shape (scheme, credentials, host, port), or None. No DNS."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in SCHEMES:
        return f"scheme {parts.scheme or '(none)'!r} is not allowed; use http:// or https://"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL (user:password@) are not allowed; authenticate by the signature header"
    if not parts.hostname:
        return "the URL has no host"
    if port == 0:
        return "port 0 is not a valid port"
    if parts.fragment:
        return "a URL fragment (#...) is never sent; remove it"
    return None


def address_problem(address: IPAddress) -> str | None:
    """Why ``address`` may not be called (e.g. "a loopback address (IPv4 127.0.0.1)"), or None when public."""
    embedded: list[IPAddress] = []
    if isinstance(address, ipaddress.IPv6Address):
        embedded = [ip for ip in (address.ipv4_mapped, address.sixtofour, *(address.teredo or ())) if ip is not None]
        if address in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    for ip in embedded:  # the IPv4 address inside says more than the IPv6 block that carries it
        kind = _kind(ip)
        if kind is not None:
            return f"a {kind} address (IPv4 {ip})"
    kind = _kind(address)
    return None if kind is None else f"a {kind} address"


def _kind(ip: IPAddress) -> str | None:
    # Order matters only for the message: the most specific name first.
    for name, flag in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("unspecified", ip.is_unspecified),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    ):
        if flag:
            return name
    return None if ip.is_global else "non-public"


def _is_literal(host: str, address: IPAddress) -> bool:
    """Whether ``host`` is an address written out (in any form the resolver takes, 2130706433 or 127.1 too),
    not a name: naming its kind then tells the sender nothing the URL did not already say."""
    try:
        return ipaddress.ip_address(host) == address
    except ValueError:
        pass
    try:
        return ipaddress.ip_address(socket.inet_aton(host)) == address
    except OSError:
        return False


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal, including forms like 2130706433, resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ResolutionFailed(f"host {host!r} does not resolve: {exc}") from exc
    seen: dict[str, IPAddress] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone id
        seen.setdefault(text, ipaddress.ip_address(text))
    if not seen:
        raise ResolutionFailed(f"host {host!r} resolves to no address")
    return list(seen.values())


def check_target(url: str, *, allow_private: bool) -> Target:
    """Resolve ``url``'s host and return where to connect; every resolved address must be public.

    Raises:
        AddressRefused: bad shape, or an address that is not public (unless ``allow_private``).
        ResolutionFailed: the host does not resolve.
    """
    problem = url_problem(url)
    if problem is not None:
        raise AddressRefused(problem)
    parts: SplitResult = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or SCHEMES[parts.scheme]
    addresses = resolve(host, port)
    if not allow_private:
        for address in addresses:
            reason = address_problem(address)
            if reason is not None:
                # A name's address is not repeated back: that would let any team map the server's internal DNS.
                refused = f"{host} is {reason}" if _is_literal(host, address) else f"{host} is not a public address"
                raise AddressRefused(
                    f"{refused}; notifications go to public addresses only "
                    "(the operator may allow private ones with GKD_NOTIFY_ALLOW_PRIVATE=1)"
                )
    return Target(url=url, scheme=parts.scheme, host=host, port=port, addresses=tuple(addresses))
