"""Safe by default: the headers every answer carries, who may listen where, and TLS.

- Every response gets a Content-Security-Policy without `unsafe-inline` (the page uses modules
  and classes only), `nosniff`, `no-referrer`, and `no-store` unless a route sets its own
  caching (the static files revalidate with ETags).
- `http.listen` beyond loopback needs `http.basic_auth_users` or an explicit
  `http.allow_unauthenticated = true`: the agent's series name the host's processes, mounts and
  interfaces, which is not for anyone on the network to read. This is a configuration error, so
  `check`, `run` and a reload all refuse it, before anything binds.
- `http.tls_cert_file` / `http.tls_key_file` come as a pair and must load; TLS 1.2 at least.

Only the standard library here: the configuration imports this module while it validates.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

from infrawatch.web.auth import hash_problem, user_problem

if TYPE_CHECKING:
    from infrawatch.config import HttpConfig

# `base-uri 'none'` keeps an injected <base> from re-pointing the page's relative module URLs;
# `form-action 'self'` keeps a form from posting elsewhere. No `img-src data:`: the page draws
# on canvases and its CSS embeds no images.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
DYNAMIC_CACHING = "no-store"  # counters, probes and API answers are stale the moment they leave

LOOPBACK_NAMES = {"localhost", "localhost."}
TLS_MINIMUM = ssl.TLSVersion.TLSv1_2

Problem = tuple[tuple[str, ...], str]  # (location inside [http], one-line message)


def secure(headers: MutableMapping[str, str]) -> None:
    """Put the security headers on a response's `headers`; keep a route's own Cache-Control."""
    headers.update(SECURITY_HEADERS)
    if "Cache-Control" not in headers:
        headers["Cache-Control"] = DYNAMIC_CACHING


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name, brackets removed) only reaches this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.partition("%")[0])  # fe80::1%eth0: zone dropped
    except ValueError:
        return False  # another name: it may resolve to anything
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class TlsError(Exception):
    """A certificate or key that can't be used; `field` is the setting to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class _EncryptedKey(Exception):
    pass


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's passphrase,
    # which would hang a service.
    raise _EncryptedKey


def _readable(field: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise TlsError(field, f"no such file: {path}") from None
    except IsADirectoryError:
        raise TlsError(field, f"is a directory, not a file: {path}") from None
    except PermissionError:
        raise TlsError(field, f"permission denied: {path}") from None
    except OSError as exc:
        raise TlsError(field, f"cannot read {path}: {exc.strerror}") from None


def tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context for the PEM certificate (chain) and key; TLS 1.2 at least."""
    _readable("tls_cert_file", cert_file)
    _readable("tls_key_file", key_file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_MINIMUM
    try:
        # Parsed alone first, so a bad certificate is told apart from a bad or mismatched key.
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert_file)
    except (ssl.SSLError, ValueError):
        raise TlsError("tls_cert_file", f"not a PEM certificate: {cert_file}") from None
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_passphrase)
    except _EncryptedKey:
        raise TlsError(
            "tls_key_file", f"the key is encrypted (a passphrase is not supported): {key_file}"
        ) from None
    except ssl.SSLError as exc:
        reason = "does not match tls_cert_file" if "VALUES_MISMATCH" in str(exc) else "not usable"
        raise TlsError("tls_key_file", f"{reason} (a PEM private key): {key_file}") from None
    return context


def config_problems(config: HttpConfig) -> list[Problem]:
    """Every problem of `[http]`'s security settings, each located at the setting to fix."""
    problems: list[Problem] = []
    for user, secret in config.basic_auth_users.items():
        problem = user_problem(user) or hash_problem(secret.get_secret_value())
        if problem is not None:
            problems.append((("basic_auth_users", user), problem))
    cert, key = config.tls_cert_file, config.tls_key_file
    if (cert is None) != (key is None):
        missing, given = "tls_key_file", "tls_cert_file"
        if cert is None:
            missing, given = given, missing
        problems.append(((missing,), f"required with {given} (TLS needs both, or neither)"))
    elif cert is not None and key is not None and config.enabled:
        try:
            tls_context(cert, key)
        except TlsError as exc:
            problems.append(((exc.field,), exc.message))
    exposed = config.enabled and not is_loopback(config.host)
    if exposed and not config.basic_auth_users and not config.allow_unauthenticated:
        problems.append(
            (
                ("listen",),
                "not a loopback address, and the server has no authentication: set"
                " http.basic_auth_users (user → bcrypt hash), or"
                " http.allow_unauthenticated = true to serve it to anyone who can reach it",
            )
        )
    return problems


def check_lines(config: HttpConfig) -> list[str]:
    """What `check` says about how the server is exposed (nothing for a loopback-only one)."""
    if not config.enabled:
        return []
    lines = []
    beyond = not is_loopback(config.host)
    where = f"listening on {config.listen} (beyond loopback)"
    if config.basic_auth_users:
        count = len(config.basic_auth_users)
        auth = f"basic auth for {count} user{'s' if count != 1 else ''}"
        lines.append(
            f"http: {where + ', ' if beyond else ''}{auth} on every path but /healthz and /readyz"
        )
        if beyond and config.tls_cert_file is None:
            lines.append(
                "http: warning: no TLS (http.tls_cert_file): passwords cross the network in"
                " clear text"
            )
    elif beyond:
        lines.append(
            f"http: warning: {where} without authentication (http.allow_unauthenticated = true)"
        )
    if config.tls_cert_file is not None:
        lines.append(f"http: TLS 1.2 or newer with {config.tls_cert_file}")
    return lines


def load_tls(config: HttpConfig) -> ssl.SSLContext | None:
    """The server's TLS context, or None when TLS is off; raise TlsError naming the setting."""
    if config.tls_cert_file is None or config.tls_key_file is None:
        return None
    return tls_context(config.tls_cert_file, config.tls_key_file)
