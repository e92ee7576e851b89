"""Keeps a process's sockets on loopback: a connection or name lookup anywhere else is
refused (an OSError) and written down, so a test can fail on it even where a library
swallows the error (Google's auth libraries do, probing for a metadata server).

In the test process, the `loopback_only` fixture of tests/gcs_emulator.py installs it;
a binary runs under it as

    python -m tests.loopback_only MODULE --flag=... # the log file: $LOOPBACK_ONLY_LOG

It watches Python's sockets (gcsfs, aiohttp, requests, google-auth). Native clients
(TensorStore's curl) are pointed at the emulator by their own settings instead.
"""
from __future__ import annotations

import ipaddress
import os
import runpy
import socket
import sys

LOG_ENV = "LOOPBACK_ONLY_LOG"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost


def _refuse(what: str, log_file: str):
    with open(log_file, "a") as f:
        f.write(what + "\n")
    raise PermissionError(f"loopback only: refused {what}")


def guarded_connect(connect, log_file: str):
    """`socket.socket.connect` (or connect_ex) that refuses non-loopback IP addresses."""
    def guarded(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address[0]):
            _refuse(f"connect {address[0]}:{address[1]}", log_file)
        return connect(sock, address)
    return guarded


def guarded_getaddrinfo(getaddrinfo, log_file: str):
    """`socket.getaddrinfo` that refuses to look up any name but loopback's."""
    def guarded(host, *args, **kwargs):
        if host is not None and not is_loopback(host):
            _refuse(f"lookup {host}", log_file)
        return getaddrinfo(host, *args, **kwargs)
    return guarded


def _main() -> None:
    log_file = os.environ[LOG_ENV]
    socket.socket.connect = guarded_connect(socket.socket.connect, log_file)
    socket.socket.connect_ex = guarded_connect(socket.socket.connect_ex, log_file)
    socket.getaddrinfo = guarded_getaddrinfo(socket.getaddrinfo, log_file)
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    _main()
