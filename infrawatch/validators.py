"""Checks shared by the config sections that talk HTTP: receiver URLs and extra request headers.

Scrape targets, exporters and alert sinks take the same URL and header settings; one owner keeps
their rules and messages alike. The messages never quote a URL or a header value: either may
carry a token.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import SecretStr
from yarl import URL

# RFC 9110 token: the characters a header field name may have.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def http_url(text: str, *, name: str = "url") -> URL:
    """`text` parsed as an http:// or https:// URL with a host and a port; else ValueError.

    `name` starts the message about the scheme ("" for none: pydantic names the field).
    """
    if not text.startswith(("http://", "https://")):
        raise ValueError(f"{name} must start with http:// or https://".lstrip())
    # Parse it now: a bad host or port would otherwise raise at every request.
    try:
        parsed = URL(text)
        valid = bool(parsed.host) and parsed.port is not None
    except ValueError:
        valid = False
    if not valid:
        raise ValueError("invalid URL (check its host and port)")
    return parsed


def receiver_url(text: str) -> str:
    """`text` if it is an http(s) URL without user or password (see `http_url`), else ValueError."""
    parsed = http_url(text)
    if parsed.user is not None or parsed.password is not None:
        # The URL is logged and shown; credentials belong in headers, which are masked.
        raise ValueError('url must not carry credentials: use headers = { Authorization = "..." }')
    return text


def request_headers(
    headers: Mapping[str, SecretStr], *, reserved: frozenset[str], setter: str
) -> None:
    """Raise ValueError for a header name that is not an RFC 9110 token, one in `reserved`
    (lower case; set by `setter` itself), or a value with a line break or NUL."""
    for key, secret in headers.items():
        if not HEADER_NAME.match(key):
            raise ValueError(f"invalid header name {key!r}")
        if key.lower() in reserved:
            raise ValueError(f"header {key!r} is set by the {setter}")
        # Never quote the value: it is usually a token.
        if any(c in secret.get_secret_value() for c in "\r\n\0"):
            raise ValueError(f"header {key!r}: value has a line break or NUL")
