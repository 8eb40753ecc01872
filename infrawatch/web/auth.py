"""HTTP basic auth against bcrypt hashes, the convention of Prometheus' web config file.

`http.basic_auth_users` maps a user to a bcrypt hash (`htpasswd -nBC 10 user`, or
`python -c 'import bcrypt; print(bcrypt.hashpw(b"pw", bcrypt.gensalt()).decode())'`).

A bcrypt check costs 50-250 ms of CPU by design, so:
- it runs in a worker thread (the event loop keeps serving), one at a time (a flood of wrong
  passwords takes one core, not all of them);
- a (user, password) pair that passed is remembered, as an HMAC under a key made at start-up
  (never the password itself), so a scraper that sends the same credentials every 15 s pays
  for bcrypt once, like Prometheus' exporter-toolkit; identical checks in flight share one run;
- a user that does not exist pays the same bcrypt check as a wrong password (against a
  configured hash), so response times don't tell which users exist.
Nothing here logs a password, a hash or the Authorization header.
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping

from pydantic import SecretStr

from infrawatch.logging import at_doubling, get_logger

log = get_logger("infrawatch.web.auth")

REALM = "infrawatch"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'
# $2a$, $2b$ and $2y$ (htpasswd's) are the same algorithm; cost 4-31; 22 salt + 31 hash chars.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
MAX_PASSWORD_BYTES = 72  # bcrypt uses no more; the bcrypt package refuses longer ones
CHECKS_AT_ONCE = 1  # bcrypt checks running at once (each holds a worker thread and a core)


def hash_problem(text: str) -> str | None:
    """Why `text` is not a bcrypt hash (never quoting it: it is a secret), or None."""
    if BCRYPT_HASH.fullmatch(text):
        return None
    if text.startswith(("$2a$", "$2b$", "$2y$")):
        return "not a valid bcrypt hash (expected $2b$<cost 04-31>$ and 53 characters)"
    return "expected a bcrypt hash ($2b$…, e.g. from htpasswd -nBC 10 USER), not a password"


def user_problem(user: str) -> str | None:
    """Why `user` can't be a basic-auth user name (RFC 7617: no colon), or None."""
    if not user:
        return "empty user name"
    if ":" in user:
        return "a user name can't contain ':'"
    if any(ord(c) < 0x20 or c == "\x7f" for c in user):
        return "control character in user name"
    return None


def parse_basic(header: str | None) -> tuple[str, bytes] | None:
    """(user, password bytes) of an `Authorization: Basic …` header, or None if it is not one."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = binascii.a2b_base64(token.strip(), strict_mode=True)
    except binascii.Error:
        return None
    user_bytes, colon, password = decoded.partition(b":")
    if not colon:
        return None
    try:
        user = user_bytes.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return user, password


class BasicAuth:
    """Checks Authorization headers against `users` (user → bcrypt hash)."""

    def __init__(self, users: Mapping[str, SecretStr]) -> None:
        if not users:
            raise ValueError("BasicAuth needs at least one user")
        # Imported here: an agent without auth never loads it.
        import bcrypt

        self._checkpw = bcrypt.checkpw
        self._hashes = {user: h.get_secret_value().encode() for user, h in users.items()}
        # An unknown user is checked against a real hash (the same cost), then refused.
        self._decoy = self._hashes[min(self._hashes)]
        self._key = secrets.token_bytes(32)  # per process: remembered digests mean nothing later
        self._passed: dict[str, bytes] = {}  # user → digest of the credentials that passed
        self._running: dict[bytes, asyncio.Task[bool]] = {}
        self._checks = asyncio.Semaphore(CHECKS_AT_ONCE)
        self.rejected = 0  # wrong credentials since start
        self.bcrypt_checks = 0  # bcrypt runs since start (the rest came from memory)

    async def check(self, header: str | None) -> bool:
        """Whether the Authorization header names a configured user and their password."""
        credentials = parse_basic(header)
        if credentials is None:
            return False
        user, password = credentials
        digest = hmac.new(self._key, user.encode() + b":" + password, hashlib.sha256).digest()
        if user in self._passed and hmac.compare_digest(self._passed[user], digest):
            return True
        task = self._running.get(digest)
        if task is None:
            task = asyncio.create_task(self._verify(user, password))
            self._running[digest] = task
            task.add_done_callback(lambda _: self._running.pop(digest, None))
        # Shielded: a client that hangs up doesn't cancel a check others may be waiting on.
        ok = await asyncio.shield(task)
        if ok:
            self._passed[user] = digest
        return ok

    async def _verify(self, user: str, password: bytes) -> bool:
        stored = self._hashes.get(user)
        async with self._checks:
            self.bcrypt_checks += 1
            matched = await asyncio.to_thread(self._bcrypt, password, stored or self._decoy)
        ok = matched and stored is not None
        if not ok:
            self.rejected += 1
            if at_doubling(self.rejected):
                log.warning("http.auth_rejected", total=self.rejected)
        return ok

    def _bcrypt(self, password: bytes, hashed: bytes) -> bool:
        if len(password) > MAX_PASSWORD_BYTES:
            # Refused rather than cut short: two passwords sharing 72 bytes are not the same.
            return False
        try:
            return bool(self._checkpw(password, hashed))
        except ValueError:  # the hash was checked at load time; never let a request crash
            return False
