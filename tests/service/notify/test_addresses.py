"""The SSRF guard: only http(s) URLs without credentials, and only public addresses unless allowed."""

from __future__ import annotations

import ipaddress

import pytest

from service.notify.addresses import AddressRefused, ResolutionFailed, address_problem, check_target, url_problem

REFUSED = [
    ("http://10.0.0.5/hook", "private"),
    ("http://172.16.3.4/hook", "private"),
    ("http://192.168.1.10:8080/hook", "private"),
    ("http://127.0.0.1:9/hook", "loopback"),
    ("http://localhost:9/hook", "localhost is not a public address"),  # a name: its address is not echoed
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://100.64.0.1/", "non-public"),  # carrier-grade NAT
    ("http://[::1]/hook", "loopback"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://[fd00::1]/hook", "private"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),  # IPv4-mapped IPv6
    ("http://[::ffff:a9fe:a9fe]/hook", "169.254.169.254"),  # the metadata service, mapped and in hex
    ("http://[64:ff9b::7f00:1]/hook", "IPv4 127.0.0.1"),  # NAT64
    ("http://[2002:7f00:1::1]/hook", "IPv4 127.0.0.1"),  # 6to4
    ("http://2130706433/hook", "loopback"),  # 127.0.0.1 as one decimal number
    ("http://0x7f000001/hook", "loopback"),  # ... in hex
    ("http://017700000001/hook", "loopback"),  # ... in octal
    ("http://127.1/hook", "loopback"),  # ... shortened
    ("http://0177.0.0.1/hook", "loopback"),  # octal first byte
    ("http://224.0.0.1/hook", "multicast"),
    ("http://240.0.0.1/hook", "reserved"),
]


@pytest.mark.parametrize(("url", "kind"), REFUSED)
def test_non_public_addresses_are_refused(url: str, kind: str) -> None:
    with pytest.raises(AddressRefused, match="public addresses only") as info:
        check_target(url, allow_private=False)
    assert kind in str(info.value)
    assert "GKD_NOTIFY_ALLOW_PRIVATE=1" in str(info.value)
    assert "127.0.0.1" not in str(info.value) or "127.0.0.1" in url or "IPv4 127.0.0.1" in kind


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "http://2130706433/x", "http://[::1]:8080/"])
def test_allow_private_lets_them_through(url: str) -> None:
    target = check_target(url, allow_private=True)
    assert all(address_problem(a) is not None for a in target.addresses)


@pytest.mark.parametrize(
    ("url", "address"),
    [("http://8.8.8.8/hook", "8.8.8.8"), ("https://[2001:4860:4860::8888]/h", "2001:4860:4860::8888")],
)
def test_public_addresses_pass_and_are_pinned(url: str, address: str) -> None:
    target = check_target(url, allow_private=False)
    assert target.addresses == (ipaddress.ip_address(address),)
    pinned = target.pinned_url(target.addresses[0])
    assert address in pinned and pinned.endswith("/hook" if "hook" in url else "/h")


def test_the_pinned_request_keeps_the_name_for_host_and_sni() -> None:
    target = check_target("http://2130706433:8080/a?b=1", allow_private=True)
    assert target.pinned_url(target.addresses[0]) == "http://127.0.0.1:8080/a?b=1"
    assert target.host_header == "2130706433:8080"
    assert check_target("https://8.8.8.8/x", allow_private=False).host_header == "8.8.8.8"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ftp://8.8.8.8/x", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("gopher://8.8.8.8/", "scheme"),
        ("8.8.8.8/hook", "scheme"),
        ("http://user:pw@8.8.8.8/x", "credentials"),
        ("http://user@8.8.8.8/x", "credentials"),
        ("http:///nohost", "no host"),
        ("http://8.8.8.8:99999/", "valid URL"),
        ("http://8.8.8.8/x#frag", "fragment"),
    ],
)
def test_url_shape_problems(url: str, needle: str) -> None:
    problem = url_problem(url)
    assert problem is not None and needle in problem
    with pytest.raises(AddressRefused):
        check_target(url, allow_private=True)


def test_an_unresolvable_host_is_a_resolution_failure() -> None:
    with pytest.raises(ResolutionFailed, match="does not resolve"):
        check_target("http://no-such-host.invalid/hook", allow_private=False)
