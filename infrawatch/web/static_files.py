"""The status page's files: `/` and `/static/<path>`, served from the package directory.

`static_routes()` reads every servable file of `infrawatch/web/static/` once and returns one
exact-path handler per file, for a router that looks paths up in a dict (HttpServer does). A
path that is not in that dict is simply not a route, so `..`, percent-encoded separators or
symlinks can never reach a file outside the package, and nothing is read from disk per request.

Files are answered from memory with a strong ETag (304 on `If-None-Match`), gzip when the client
accepts it, and `Cache-Control: no-cache`: names carry no content hash, so a browser must
revalidate (a cheap 304) to pick up a new version after an upgrade. Every answer carries the
security headers (web/security.py: a CSP without unsafe-inline — the page uses modules and
classes only), so the page is protected whichever server wires these routes.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from infrawatch.web.security import SECURITY_HEADERS

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

STATIC_DIR = Path(__file__).with_name("static")
STATIC_PREFIX = "/static/"
INDEX = "index.html"

# Only these kinds are served; anything else in the directory (say a stray .py) is not a route.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}
PLAIN_NAMES = {"LICENSE", "VERSION"}  # vendored notices without a suffix
COMPRESSIBLE = {".html", ".js", ".css", ".svg", ".txt", ""}


@dataclass(frozen=True, slots=True)
class StaticFile:
    """One file held in memory: its body, a gzip copy when that is smaller, their ETags."""

    content_type: str
    body: bytes
    gzipped: bytes | None
    etag: str

    @classmethod
    def load(cls, path: Path) -> StaticFile:
        """Read and, for text, gzip `path` (a few ms for the whole page, once at start-up)."""
        body = path.read_bytes()
        suffix = path.suffix.lower()
        content_type = CONTENT_TYPES.get(suffix, "text/plain; charset=utf-8")
        gzipped: bytes | None = None
        if suffix in COMPRESSIBLE:
            # mtime=0: the same file always compresses to the same bytes.
            packed = gzip.compress(body, compresslevel=9, mtime=0)
            gzipped = packed if len(packed) < len(body) else None
        digest = hashlib.sha256(body).hexdigest()[:20]
        return cls(content_type, body, gzipped, digest)

    def respond(self, request: web.BaseRequest) -> web.Response:
        """200 with the body (gzip when accepted), or 304 when the client's copy is current."""
        packed = self.gzipped if accepts_gzip(request.headers.get("Accept-Encoding")) else None
        etag = f'"{self.etag}-gz"' if packed is not None else f'"{self.etag}"'
        headers = {
            "ETag": etag,
            "Cache-Control": "no-cache",
            "Vary": "Accept-Encoding",
            **SECURITY_HEADERS,
        }
        if etag_matches(request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = self.content_type
        if packed is not None:
            headers["Content-Encoding"] = "gzip"
            return web.Response(body=packed, headers=headers)
        return web.Response(body=self.body, headers=headers)


def accepts_gzip(header: str | None) -> bool:
    """Whether an Accept-Encoding header allows gzip (`gzip`, `*`, not `gzip;q=0`)."""
    if not header:
        return False
    allowed: dict[str, bool] = {}
    for item in header.split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        allowed[name.strip().lower()] = q > 0
    return allowed.get("gzip", allowed.get("*", False))


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether If-None-Match names `etag` (weak comparison, as RFC 9110 says for GET)."""
    if not header:
        return False
    for item in header.split(","):
        tag = item.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def servable(directory: Path) -> dict[str, Path]:
    """URL path → file for every file under `directory` the page may load (sorted, stable)."""
    files: dict[str, Path] = {}
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if any(part.startswith((".", "_")) for part in relative.parts):
            continue  # dotfiles, __pycache__
        # A symlink could point outside the package; the page never needs one.
        if path.is_symlink() or not path.is_file():
            continue
        if path.suffix.lower() not in CONTENT_TYPES and path.name not in PLAIN_NAMES:
            continue
        files[STATIC_PREFIX + relative.as_posix()] = path
    index = directory / INDEX
    if index.is_file() and not index.is_symlink():
        files["/"] = index
    return files


def static_routes(directory: Path = STATIC_DIR) -> dict[str, Handler]:
    """Exact-path handlers for `/` (index.html) and `/static/<file>` of every servable file."""
    routes: dict[str, Handler] = {}
    for url, path in servable(directory).items():
        routes[url] = _handler(StaticFile.load(path))
    return routes


def _handler(file: StaticFile) -> Handler:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        return file.respond(request)

    return handle
