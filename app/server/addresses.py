"""Which URLs a listener bound to a host can be reached at."""

from __future__ import annotations

import ipaddress
import socket

import psutil

_ANY = {"0.0.0.0", "::", ""}


def interface_addresses() -> list[str]:
    """Non-loopback IPv4 addresses of this machine's network interfaces, sorted."""
    found = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not ipaddress.ip_address(address.address).is_loopback:
                found.add(address.address)
    return sorted(found, key=ipaddress.ip_address)


def listening_urls(host: str, port: int, path: str, scheme: str = "http") -> list[str]:
    """URLs to paste into a stream's URI: loopback first, then each LAN address."""
    hosts = ["127.0.0.1", *interface_addresses()] if host in _ANY else [host]
    return [f"{scheme}://{_bracket(name)}:{port}{path}" for name in hosts]


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host
