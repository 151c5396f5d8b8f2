"""Start-up failures of ``mcp-trio serve`` as one line each: the cause and the next step.

What goes wrong when a server starts is nearly always the operator's to fix (a port taken, a
certificate path mistyped, a key file missing), and a 70-line nested ExceptionGroup hides the
one fact that matters. Each check here turns one such failure into a ``StartupError``: exit
status 2 for usage and configuration errors, 1 for run-time ones (the port was taken). The CLI
prints its message alone, and the traceback only with ``--log-level debug``.

It also owns the one warning an open server gets: bound beyond loopback with nobody asked
for a credential.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

logger = logging.getLogger("mcp_trio.cli")

#: Exit statuses: the command line or the configuration is wrong / the run failed.
USAGE = 2
RUNTIME = 1


class StartupError(Exception):
    """The server cannot start; ``str(exc)`` says why and what to do, ``status`` is the exit status."""

    def __init__(self, message: str, status: int = USAGE) -> None:
        super().__init__(message)
        self.status = status


def is_loopback_host(host: str) -> bool:
    """Whether binding ``host`` serves this machine only (``127.0.0.1``, ``::1``, ``localhost``)."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def warn_if_open(host: str, authenticated: bool) -> None:
    """One WARNING line when a network server is reachable beyond this machine and asks no one
    for a credential: it may be meant (a trusted network), but it must not go unnoticed."""
    if not authenticated and not is_loopback_host(host):
        logger.warning("serving on %s with no authentication: anyone who can reach it may call every tool; "
                       "configure [auth] (docs/security.md) or bind --host 127.0.0.1", host)


def _readable(path: str, flag: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise StartupError(f"{flag} {path}: {exc.strerror or exc}: pass the path of a PEM file") from None


def tls_context(certfile: str | None, keyfile: str | None) -> ssl.SSLContext | None:
    """The server's TLS context, loaded and checked now (None without ``certfile``).

    A key without a certificate would otherwise serve plain text, and a certificate that
    cannot be loaded would fail at every handshake of a server that says it is serving.
    """
    import ssl  # only servers with TLS pay for it

    if certfile is None:
        if keyfile is not None:
            raise StartupError(f"--keyfile {keyfile} was given without --certfile: pass --certfile CERT.pem as well "
                               "(or drop --keyfile to serve without TLS)")
        return None
    _readable(certfile, "--certfile")
    if keyfile is not None:
        _readable(keyfile, "--keyfile")
    try:
        ssl.create_default_context().load_verify_locations(cafile=certfile)
    except ssl.SSLError:
        raise StartupError(f"--certfile {certfile} holds no PEM certificate: pass the server's certificate "
                           "(-----BEGIN CERTIFICATE-----)") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile, password=lambda: b"")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise StartupError(f"--keyfile {keyfile or certfile} is not the key of --certfile {certfile}: "
                               "pass the matching pair") from None
        if keyfile is None:
            raise StartupError(f"--certfile {certfile} holds no private key: pass --keyfile KEY.pem") from None
        raise StartupError(f"--keyfile {keyfile} holds no usable private key (an encrypted key is not supported): "
                           "pass an unencrypted PEM key") from None
    return context


def bind_failure(exc: BaseException, host: str, port: int) -> StartupError | None:
    """The ``StartupError`` for a failure to listen on ``host:port`` found anywhere in ``exc``
    (the transports raise it from inside nested nurseries), or None when it is something else."""
    for leaf in _leaves(exc):
        if isinstance(leaf, socket.gaierror):
            return StartupError(f"cannot listen on {host}: no such host name ({leaf.strerror}): pass --host with an "
                                "address of this machine", RUNTIME)
        if not isinstance(leaf, OSError):
            continue
        if leaf.errno == errno.EADDRINUSE:
            return StartupError(f"port {port} on {host} is in use: pass --port or stop the other server", RUNTIME)
        if leaf.errno == errno.EACCES:
            return StartupError(f"not allowed to listen on port {port} of {host} (ports below 1024 need privileges): "
                                "pass --port 8000 or another above 1023", RUNTIME)
        if leaf.errno == errno.EADDRNOTAVAIL:
            return StartupError(f"cannot listen on {host}: not an address of this machine: pass --host 127.0.0.1 "
                                "(this machine only) or 0.0.0.0 (every interface)", RUNTIME)
    return None


def redis_failure(exc: BaseException) -> StartupError | None:
    """The ``StartupError`` for Redis failing cluster mode's start (unreachable, refused
    credentials, failed TLS, too old), found anywhere in ``exc``; its message is one line."""
    for leaf in _leaves(exc):
        if type(leaf).__name__ == "RedisUnavailable":  # named, not imported: no cluster import here
            return StartupError(str(leaf), RUNTIME)
    return None


def lifespan_failure(exc: BaseException) -> StartupError | None:
    """The ``StartupError`` for the server's lifespan failing (at start, or at shutdown) found
    anywhere in ``exc``: its message is already one line; None when it is something else."""
    from .serving._lifespan import LifespanError

    for leaf in _leaves(exc):
        if isinstance(leaf, LifespanError):
            return StartupError(str(leaf), RUNTIME)
    return None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def unexpected(exc: BaseException) -> str:
    """One line for a failure nothing above recognised, pointing at the traceback."""
    leaves = _leaves(exc)
    first = leaves[0] if leaves else exc
    text = str(first) or type(first).__name__
    return f"stopped by {type(first).__name__}: {text} (--log-level debug shows the traceback)"


def log_level_of(argv_level: str | None, env: Any = os.environ) -> str:
    """The log level asked for before the configuration could be read (for start-up errors)."""
    return (argv_level or env.get("MCP_TRIO_SERVER_LOG_LEVEL") or "warning").lower()
