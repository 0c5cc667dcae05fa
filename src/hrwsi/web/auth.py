"""Who may take operator actions on the dashboard, and who did.

Operator actions (retry, cancel, hold, release) need a token from HRWSI_WEB_TOKEN: either one
token (the actor is then recorded as "operator") or several named ones, `alice:TOKEN,bob:TOKEN`,
so that the audit names the person. Without HRWSI_WEB_TOKEN the dashboard is read-only.

- API clients send `Authorization: Bearer TOKEN`.
- Browsers log in once with the token and receive a session cookie (HttpOnly, SameSite=Strict):
  `actor|expiry|HMAC(key, actor|expiry)`, where the key is derived from the configured tokens, so
  sessions survive a restart, work on every replica, and all end when the tokens change.
- Every form carries a CSRF value bound to the session (HMAC of it); SameSite=Strict alone would
  leave older browsers open.

Tokens are compared with hmac.compare_digest against every configured token (no early exit), and
never logged, echoed or put in a page.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from dataclasses import dataclass, field

from hrwsi.backends.ascii_decimal import is_ascii_decimal

SESSION_COOKIE = "hrwsi_session"
SESSION_S = 12 * 3600
MIN_TOKEN_LENGTH = 16
_ACTOR_CHARACTERS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")


class TokenSettingError(ValueError):
    """HRWSI_WEB_TOKEN cannot be used (the message never contains a token)."""


def parse_tokens(raw: str | None) -> tuple[tuple[str, str], ...]:
    """(actor, token) pairs from HRWSI_WEB_TOKEN: `TOKEN` or `name:TOKEN,name:TOKEN`."""
    if raw is None or not raw.strip():
        return ()
    entries = [e.strip() for e in raw.split(",") if e.strip()]
    pairs = []
    for index, entry in enumerate(entries, 1):
        actor, separator, token = entry.partition(":")
        if not separator:
            if len(entries) > 1:
                raise TokenSettingError(f"HRWSI_WEB_TOKEN entry {index} has no name: write name:TOKEN for each "
                                        "of several tokens")
            actor = "operator"  # one token: the audit cannot tell people apart
            token = entry
        if not actor or not set(actor) <= _ACTOR_CHARACTERS:
            raise TokenSettingError(f"HRWSI_WEB_TOKEN entry {index}: the name must be letters, digits, . _ @ -")
        if len(token) < MIN_TOKEN_LENGTH:
            raise TokenSettingError(
                f"HRWSI_WEB_TOKEN entry {index} ({actor}) is shorter than {MIN_TOKEN_LENGTH} characters; make one "
                "with: python3 -c 'import secrets; print(secrets.token_urlsafe(24))'")
        pairs.append((actor, token))
    if len({a for a, _ in pairs}) != len(pairs):
        raise TokenSettingError("HRWSI_WEB_TOKEN names an operator twice")
    return tuple(pairs)


@dataclass(frozen=True)
class Authenticator:
    tokens: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    session_s: float = SESSION_S

    @classmethod
    def from_env(cls) -> Authenticator:
        return cls(parse_tokens(os.environ.get("HRWSI_WEB_TOKEN")))

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    @property
    def _key(self) -> bytes:
        material = "\n".join(f"{actor}:{token}" for actor, token in self.tokens).encode()
        return hmac.new(material, b"hrwsi-web-session-v1", hashlib.sha256).digest()

    def actor_for_token(self, presented: str | None) -> str | None:
        """The actor whose token this is, or None. Compares with every token, in constant time."""
        if not presented or not self.tokens:
            return None
        found = None
        given = presented.encode()
        for actor, token in self.tokens:
            if hmac.compare_digest(given, token.encode()):
                found = actor
        return found

    def _sign(self, text: str) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, text.encode(), hashlib.sha256).digest()).decode().rstrip("=")

    def session_for(self, actor: str, now: float | None = None) -> str:
        expiry = int((time.time() if now is None else now) + self.session_s)
        payload = f"{actor}|{expiry}"
        return f"{payload}|{self._sign(payload)}"

    def actor_for_session(self, cookie: str | None, now: float | None = None) -> str | None:
        if not cookie or not self.tokens:
            return None
        actor, _, rest = cookie.partition("|")
        expiry, _, signature = rest.partition("|")
        if not is_ascii_decimal(expiry) or not hmac.compare_digest(signature.encode(), self._sign(f"{actor}|{expiry}").encode()):
            return None
        if int(expiry) < (time.time() if now is None else now):
            return None
        if actor not in {a for a, _ in self.tokens}:
            return None
        return actor

    def csrf_for(self, cookie: str) -> str:
        return self._sign(f"csrf|{cookie}")

    def csrf_ok(self, cookie: str | None, presented: str | None) -> bool:
        if not cookie or not presented:
            return False
        return hmac.compare_digest(presented.encode(), self.csrf_for(cookie).encode())


class WrongTokens:
    """Wrong tokens presented, said in the log per client address: the first at once, then at most
    once a minute with how many came since, so that a client guessing tokens is seen without one
    line per guess (a token of 16 characters or more is not guessed; the log says someone tries)."""

    SAY_EVERY_S = 60.0
    MAX_CLIENTS = 1000  # addresses remembered; the oldest are forgotten first

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.said_at: dict[str, float] = {}
        self.unsaid: dict[str, int] = {}

    def count(self, client: str | None) -> int | None:
        """Count one wrong token from `client`; how many to say now (this one included), or None."""
        key, now = client or "?", self.clock()
        self.unsaid[key] = self.unsaid.get(key, 0) + 1
        said = self.said_at.get(key)
        if said is not None and now - said < self.SAY_EVERY_S:
            return None
        if len(self.said_at) >= self.MAX_CLIENTS and key not in self.said_at:
            oldest = min(self.said_at, key=self.said_at.__getitem__)
            del self.said_at[oldest]
            self.unsaid.pop(oldest, None)
        self.said_at[key] = now
        return self.unsaid.pop(key)


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
