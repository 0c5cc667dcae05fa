"""An async client of the Copernicus Data Space catalogue (OData `/odata/v1/Products`), and the
harvest of a catalogue source into inputs.

The transfer (OData over HTTP, paging by `@odata.nextLink`, retries) and the authentication are
separate, IAGOS style: any `Auth` handler (NoAuth, BasicAuth, OAuth2PasswordAuth,
OAuth2ClientCredentialsAuth) combines with the same client.

Retries: a 429 (honouring Retry-After), a 5xx, a timeout or a dropped connection is retried with
jittered exponential backoff, a bounded number of times; then CatalogueUnavailable says what the
last answer was. A 401 makes the handler fetch a new token once. Other 4xx answers are mistakes
in the query or the credentials: CatalogueError at once, with the server's message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import random
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import aiohttp
import asyncpg
import ijson

from hrwsi.backends.ascii_decimal import ascii_decimal
from hrwsi.harvest import input_checks, schedules
from hrwsi.harvest.product_names import scene_id_of, tile_and_mission
from hrwsi.harvest.source_config import ConfigUnreadable, config_of, json_number, source_may_read
from hrwsi.service_logging import task_fields
from hrwsi.sql_files import query
from hrwsi.terminal import shown

logger = logging.getLogger(__name__)

CDSE_TOKEN_URL = "https://identity.dataspace.copernicus.eu/auth/realms/CDSE/protocol/openid-connect/token"


class CatalogueError(RuntimeError):
    """The catalogue refused a request, or answered something unreadable; the message says which."""


class CatalogueUnavailable(CatalogueError):
    """The catalogue kept failing (429, 5xx, timeouts) after every retry."""


class CatalogueAuthError(CatalogueError):
    """Credentials missing or refused."""


class ClaimLost(RuntimeError):
    """The run's claim on its source lapsed and another harvester took the source over."""


class SourceWithdrawn(RuntimeError):
    """The source was deactivated or deleted while it ran: the run stops between two pages."""

    def __init__(self, message: str, *, deleted: bool):
        super().__init__(message)
        self.deleted = deleted


class ProductUnusable(ValueError):
    """One catalogue product the harvest cannot take. `reason` is the same for every product refused
    alike (what a summary counts); the message adds what this product had."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# Pages one run asks for at most, unless the source's config says `max_pages_per_run`: a catalogue
# whose paging never ends (a broken server, 4,610 inputs in one run found by exploratory testing)
# stops there; at 100 products a page, 100,000 products, more than a day of Sentinel-2 L1C.
MAX_PAGES_PER_RUN = 1000


# The largest page a catalogue may answer, unless the source's config says `max_page_mb`: an answer
# is read piece by piece and refused past it. Read whole, an endless `{"value": [` drove the
# harvester (all the services, in `hrwsi up`) to 23 GB until the OOM killer took them (found by
# exploratory testing). A CDSE page of 100 products is about 200 kB.
MAX_PAGE_MB = 32.0
# A token endpoint's answer is a few hundred bytes; an error answer is read this far, for its message.
TOKEN_ANSWER_MAX_BYTES = 64 * 1024
ERROR_ANSWER_MAX_BYTES = 64 * 1024
# Products counted between two yields to the event loop (they are mapped in a thread: _map_page): a page
# of millions of products (within the size limit) must not hold the loop, and with it the other services
# of the process, for minutes.
PRODUCTS_PER_YIELD = 500
# A page larger than this is parsed as it streams in (_StreamedPage), a chunk at a time between turns
# of the event loop. json.loads in a thread held the GIL for the whole parse (it never releases it):
# a 28.8 MB page stalled the loop, and in `hrwsi up` every service with it, 266 ms (found by
# exploratory testing); fed to ijson's C parser chunk by chunk, the loop's worst stall is a chunk's.
STREAM_PARSE_FROM_BYTES = 1024 * 1024
# What one feed of the parser takes at most (a read may hand over more): about a millisecond of parsing.
STREAM_PARSE_CHUNK_BYTES = 64 * 1024


def shown_url(url: str) -> str:
    """A URL as messages, the log and last_error show it: no user or password (`svc:pw@` is `***@`),
    and the value of every query parameter but OData's own ($filter, $top, $skip...) replaced by
    `***` (`?apikey=***`): a catalogue URL may carry credentials, and last_error is read by every
    reader of the database, the dashboard and `hrwsi status`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port is not None else ""
    except ValueError:
        return "<a URL that cannot be read>"
    if ":" in host:
        host = f"[{host}]"
    netloc = ("***@" if "@" in parts.netloc else "") + host + port
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(f"{key}={value if key.startswith('$') else '***'}" for key, value in pairs)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def scrubbed(text: str, secrets: list[str]) -> str:
    """`text` with each secret value replaced by `***`: a server may echo back what it was sent."""
    for secret in sorted((s for s in secrets if s and len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


class PageTooLarge(CatalogueError):
    """An answer larger than the source's limit (max_page_mb)."""


class _StreamedPage:
    """A JSON answer parsed as it is read. Up to STREAM_PARSE_FROM_BYTES it is only kept (json.loads
    parses it at the end, as fast as anything); past it, an object is fed to ijson's C parser
    (yajl2_c) chunk by chunk, which builds its members as they complete, and the caller yields to the
    event loop between chunks. An answer that is not an object is kept whole and parsed in a thread
    (an error answer; the pages are objects). ValueError: not JSON."""

    def __init__(self) -> None:
        self.head = bytearray()  # the answer up to where streaming began (all of it, when it did not)
        self._members: list | None = None
        self._parser: Any = None

    async def feed(self, chunk: bytes) -> None:
        """One piece of the answer; once streaming, the loop gets its turn after each parsed chunk (a read
        of data already received does not yield, and the answer's first STREAM_PARSE_FROM_BYTES are
        parsed at once)."""
        if self._parser is None:
            self.head += chunk
            if (len(self.head) <= STREAM_PARSE_FROM_BYTES or _STREAMING_BACKEND is None
                    or not self.head.lstrip().startswith(b"{")):
                return
            self._members = ijson.sendable_list()
            # use_float: numbers as json.loads gives them (ijson's default is Decimal)
            self._parser = _STREAMING_BACKEND.kvitems_coro(self._members, "", use_float=True)
            chunk = bytes(self.head)
        for start in range(0, len(chunk), STREAM_PARSE_CHUNK_BYTES):
            try:
                self._parser.send(chunk[start:start + STREAM_PARSE_CHUNK_BYTES])
            except ijson.JSONError as error:
                raise ValueError(str(error)) from None
            await asyncio.sleep(0)

    async def parsed(self) -> Any:
        if self._parser is None:
            if len(self.head) > STREAM_PARSE_FROM_BYTES:
                return await asyncio.to_thread(json.loads, bytes(self.head))
            return json.loads(self.head)
        try:
            self._parser.close()
        except ijson.JSONError as error:
            raise ValueError(str(error)) from None
        return dict(self._members or ())


try:  # (the C parser: ijson's pure-Python one would take the loop longer per chunk than the thread did)
    _STREAMING_BACKEND: Any = ijson.get_backend("yajl2_c")
except ImportError:  # pragma: no cover - ijson's wheels carry it for every platform hrwsi runs on
    _STREAMING_BACKEND = None


class _OverLimit(Exception):
    """A body larger than the limit its reader was given (_chunks_within)."""


async def _chunks_within(response: aiohttp.ClientResponse, limit: int,
                         chunk_bytes: int = 64 * 1024) -> AsyncIterator[bytes]:
    """The body's chunks as they come, while they add up to at most `limit` bytes (a declared length
    over it is refused before any is read); past it, _OverLimit. The one size check of every bounded
    read: a token's or an error's answer (_read_at_most) and a page (_page)."""
    if response.content_length is not None and response.content_length > limit:
        raise _OverLimit
    size = 0
    async for chunk in response.content.iter_chunked(chunk_bytes):
        size += len(chunk)
        if size > limit:
            raise _OverLimit
        yield chunk


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """The body, read piece by piece up to `limit` bytes: (what was read, whether it is all)."""
    chunks: list[bytes] = []
    try:
        async for chunk in _chunks_within(response, limit):
            chunks.append(chunk)
    except _OverLimit:
        return b"".join(chunks), False
    return b"".join(chunks), True


# ---------------------------------------------------------------------------------------------
# Authentication handlers
# ---------------------------------------------------------------------------------------------

class Auth:
    """How requests prove who sends them. `headers` may fetch a token; `invalidate` after a 401."""

    async def headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        return {}

    def invalidate(self) -> None:
        """The server answered 401: forget any token, so the next request gets a new one."""

    def describe(self) -> str:
        """How the requests authenticate, for messages: never a credential's value (the username
        included: it came from a variable, and whatever that variable holds must not reach
        last_error, which every reader of the database sees), at most the variables' names."""
        return type(self).__name__

    def secrets(self) -> list[str]:
        """The values a message must never show (a server may echo them back: scrubbed)."""
        return []


class NoAuth(Auth):
    pass


class BasicAuth(Auth):
    def __init__(self, username: str, password: str, *, username_env: str | None = None):
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._header = {"Authorization": f"Basic {token}"}
        self._secrets = [username, password, token]
        self.username_env = username_env

    async def headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        return dict(self._header)

    def describe(self) -> str:
        return "basic auth" + (f" (the username in {self.username_env})" if self.username_env else "")

    def secrets(self) -> list[str]:
        return list(self._secrets)


_JSON_TYPES = {type(None): "null", bool: "true or false", int: "a number", float: "a number", list: "an array",
               dict: "an object"}


class OAuth2TokenAuth(Auth):
    """A bearer token from an OAuth2 token endpoint, renewed before it expires (with the refresh
    token when the server gave one, else a new grant) and after a 401."""

    def __init__(self, token_url: str, *, refresh_margin_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic, timeout_s: float = 30.0):
        self.token_url = token_url
        self.refresh_margin_s = refresh_margin_s
        self.clock = clock
        self.timeout_s = timeout_s
        self._access_token: str | None = None
        self._expires_at = 0.0
        self._refresh_token: str | None = None
        self._refresh_expires_at = 0.0
        self._lock = asyncio.Lock()  # concurrent requests share one token fetch
        self.tokens_fetched = 0

    def grant(self) -> dict[str, str]:
        raise NotImplementedError

    async def headers(self, session: aiohttp.ClientSession) -> dict[str, str]:
        async with self._lock:
            if self._access_token is None or self.clock() >= self._expires_at - self.refresh_margin_s:
                await self._fetch(session)
            return {"Authorization": f"Bearer {self._access_token}"}

    def invalidate(self) -> None:
        self._access_token = None

    def secrets(self) -> list[str]:
        return [value for value in (*self.grant_secrets(), self._access_token, self._refresh_token) if value]

    def grant_secrets(self) -> list[str]:
        return []

    async def _fetch(self, session: aiohttp.ClientSession) -> None:
        use_refresh = (self._refresh_token is not None and self._access_token is not None
                       and self.clock() < self._refresh_expires_at - self.refresh_margin_s)
        form = ({"grant_type": "refresh_token", "refresh_token": self._refresh_token,
                 "client_id": self.grant().get("client_id", "")} if use_refresh else self.grant())
        try:
            async with session.post(self.token_url, data=form,
                                    timeout=aiohttp.ClientTimeout(total=self.timeout_s)) as response:
                body, complete = await _read_at_most(response, TOKEN_ANSWER_MAX_BYTES)
                text = body.decode("utf-8", "replace")
                if response.status != 200:
                    if use_refresh:  # an expired or revoked refresh token: start over with the grant
                        self._refresh_token = None
                        return await self._fetch(session)
                    raise CatalogueAuthError(
                        f"the token endpoint {shown_url(self.token_url)} refused the {form['grant_type']} grant: "
                        f"{response.status} {scrubbed(_excerpt(text), self.secrets())}")
                if not complete:
                    raise CatalogueAuthError(f"the token endpoint {shown_url(self.token_url)} answered more than "
                                             f"{TOKEN_ANSWER_MAX_BYTES // 1024} kB: not a token")
                answer = json.loads(text)
        except (TimeoutError, aiohttp.ClientError) as error:
            raise CatalogueAuthError(f"cannot reach the token endpoint {shown_url(self.token_url)}: "
                                     f"{type(error).__name__} {scrubbed(str(error), [self.token_url])}") from error
        except (ValueError, RecursionError):  # (JSONDecodeError; or nested deeper than the decoder goes)
            raise CatalogueAuthError(f"the token endpoint {shown_url(self.token_url)} answered no JSON: "
                                     f"{scrubbed(_excerpt(text), self.secrets())}") from None
        access_token, expires_in, refresh_token, refresh_expires_in = self._token_of(answer)
        now = self.clock()
        self._access_token = access_token
        self._expires_at = now + expires_in
        self._refresh_token = refresh_token
        self._refresh_expires_at = now + refresh_expires_in
        self.tokens_fetched += 1
        logger.debug("catalogue: new token from %s (%s), valid %s s", shown_url(self.token_url), form["grant_type"],
                     answer.get("expires_in"))


    def _token_of(self, answer: Any) -> tuple[str, float, str | None, float]:
        """(access_token, expires_in, refresh_token, refresh_expires_in) of a token answer, or
        CatalogueAuthError saying which field is not what OAuth2 says (RFC 6749, 5.1). Read as given, an
        expires_in of null was a TypeError with a traceback, and an access_token of 42 went out as
        "Bearer 42" (found by exploratory testing)."""
        where = f"the token endpoint {shown_url(self.token_url)}"
        if not isinstance(answer, dict) or "access_token" not in answer:
            raise CatalogueAuthError(f"{where} answered no access_token")
        for key in ("access_token", "refresh_token"):
            value = answer.get(key)
            if (value is not None or key == "access_token") and (not isinstance(value, str) or not value.strip()):
                # (its type, never its value: it may hold a credential)
                raise CatalogueAuthError(f"{where} answered a token that is not one: {key} is not text "
                                         f"({_JSON_TYPES.get(type(value), 'empty text')})")
        seconds = []
        for key, default in (("expires_in", 300.0), ("refresh_expires_in", 0.0)):
            value = answer.get(key, default)
            number = answered_number(value)
            if number is None or number < 0:
                raise CatalogueAuthError(f"{where} answered a token that is not one: {key} is not a number of seconds "
                                         f"({_excerpt(json.dumps(value), 60)}"
                                         f"{NUMBER_AS_TEXT if isinstance(value, str) else ''})")
            seconds.append(number)
        return answer["access_token"], seconds[0], answer.get("refresh_token"), seconds[1]


class OAuth2PasswordAuth(OAuth2TokenAuth):
    """CDSE style: grant_type=password with the public client `cdse-public`."""

    def __init__(self, username: str, password: str, *, token_url: str = CDSE_TOKEN_URL,
                 client_id: str = "cdse-public", username_env: str | None = None, **options: Any):
        super().__init__(token_url, **options)
        self.username, self._password, self.client_id = username, password, client_id
        self.username_env = username_env

    def grant(self) -> dict[str, str]:
        return {"grant_type": "password", "client_id": self.client_id, "username": self.username,
                "password": self._password}

    def describe(self) -> str:
        return "OAuth2 password grant" + (f" (the username in {self.username_env})" if self.username_env else "")

    def grant_secrets(self) -> list[str]:
        return [self.username, self._password]


class OAuth2ClientCredentialsAuth(OAuth2TokenAuth):
    def __init__(self, client_id: str, client_secret: str, *, token_url: str = CDSE_TOKEN_URL, **options: Any):
        super().__init__(token_url, **options)
        self.client_id, self._client_secret = client_id, client_secret

    def grant(self) -> dict[str, str]:
        return {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self._client_secret}

    def grant_secrets(self) -> list[str]:
        return [self._client_secret]

    def describe(self) -> str:
        return f"OAuth2 client credentials of {self.client_id}"


def _secret(config: dict, key: str, source: str) -> str:
    variable = config.get(key)
    if not variable or not isinstance(variable, str):
        raise CatalogueAuthError(f"source {source}: auth.{key} must name the environment variable holding the secret")
    refused = source_may_read(variable)
    if refused is not None:
        raise CatalogueAuthError(f"source {source}: auth.{key} refused: {refused}")
    value = os.environ.get(variable)
    if value is None:
        raise CatalogueAuthError(f"source {source}: environment variable {variable} (auth.{key}) is not set")
    return value


def auth_from_config(config: dict | None, source: str = "?") -> Auth:
    """The handler a source's config.auth describes; secrets come from the environment variables it names."""
    config = config or {"type": "none"}
    kind = config.get("type", "none")
    if kind == "none":
        return NoAuth()
    if kind == "basic":
        return BasicAuth(_secret(config, "username_env", source), _secret(config, "password_env", source),
                         username_env=config["username_env"])
    options = {"token_url": config.get("token_url", CDSE_TOKEN_URL)}
    if kind == "oauth2_password":
        return OAuth2PasswordAuth(_secret(config, "username_env", source), _secret(config, "password_env", source),
                                  client_id=config.get("client_id", "cdse-public"), username_env=config["username_env"],
                                  **options)
    if kind == "oauth2_client_credentials":
        return OAuth2ClientCredentialsAuth(config.get("client_id") or _secret(config, "client_id_env", source),
                                           _secret(config, "client_secret_env", source), **options)
    raise CatalogueAuthError(f"source {source}: unknown auth type {shown(kind)}")


# ---------------------------------------------------------------------------------------------
# Queries and products
# ---------------------------------------------------------------------------------------------

def _odata_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _odata_string(text: str) -> str:
    # An OData string literal: a quote is written twice.
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class ProductQuery:
    collection: str                              # SENTINEL-1, SENTINEL-2 ...
    product_type: str | None = None              # the productType attribute: S2MSI1C, IW_GRDH_1S ...
    published_after: datetime | None = None      # PublicationDate > this
    published_before: datetime | None = None     # PublicationDate <= this
    sensed_after: datetime | None = None         # ContentDate/Start >= this
    sensed_before: datetime | None = None        # ContentDate/Start < this
    tiles: tuple[str, ...] = ()                  # MGRS tiles, matched in the product name
    area_wkt: str | None = None                  # or an area: POLYGON((lon lat, ...)) in WGS84
    top: int = 100                               # page size
    order_by: str = "PublicationDate asc"        # the key the pages go by (see keyset_clause)

    @property
    def order_field(self) -> str:
        """The field the products are asked in order of: PublicationDate, ContentDate/Start."""
        return self.order_by.split()[0]

    def keyset_clause(self, after: str, seen_there: Sequence[str] = ()) -> str:
        """The products from `after` (the order field's value of the last product of a page) on, in the query's
        order: how the next page is asked (keyset paging), rather than by the server's `$skip` link. With `$skip`,
        a product withdrawn from (or added to) the result set between two pages shifted it, and the product at the
        page boundary was never seen (or seen twice); a key does not move with the products before it. `ge`, not
        `gt`: a page may end part-way through the products of one instant, and `gt` would lose the rest. The
        products of that instant already seen (`seen_there`, their Ids) are left out by the filter (`Id ne`): asked
        `ge` alone, each page brought the last product of the one before again (a page in `top` transferred twice),
        and the client left it out by its Id (Catalogue.products still does, for a catalogue that refuses or
        ignores `Id ne`). The order does not name Id: CDSE documents `$orderby` on its dates (PublicationDate,
        ContentDate/Start...), not on Id, and a page refused for it would be every run's first."""
        return " and ".join([f"{self.order_field} ge {after}", *(f"Id ne {_odata_id(seen)}" for seen in seen_there)])

    def filter(self, after: str | None = None, seen_there: Sequence[str] = ()) -> str:
        clauses = [f"Collection/Name eq {_odata_string(self.collection)}"]
        if self.product_type:
            clauses.append("Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and "
                           f"att/OData.CSC.StringAttribute/Value eq {_odata_string(self.product_type)})")
        if self.published_after:
            clauses.append(f"PublicationDate gt {_odata_time(self.published_after)}")
        if self.published_before:
            clauses.append(f"PublicationDate le {_odata_time(self.published_before)}")
        if self.sensed_after:
            clauses.append(f"ContentDate/Start ge {_odata_time(self.sensed_after)}")
        if self.sensed_before:
            clauses.append(f"ContentDate/Start lt {_odata_time(self.sensed_before)}")
        if self.tiles:
            clauses.append("(" + " or ".join(f"contains(Name,{_odata_string('_T' + t + '_')})"
                                             for t in self.tiles) + ")")
        if self.area_wkt:
            clauses.append(f"OData.CSC.Intersects(area=geography'SRID=4326;{self.area_wkt}')")
        if after is not None:
            clauses.append(self.keyset_clause(after, seen_there))
        return " and ".join(clauses)

    def params(self, after: str | None = None, seen_there: Sequence[str] = ()) -> dict[str, str]:
        return {"$filter": self.filter(after, seen_there), "$top": str(self.top), "$orderby": self.order_by}

    def key_of(self, product: Any) -> tuple[str, str] | None:
        """Where a product lies in the query's order, as OData literals: (its order field's value, its Id); None when
        it does not say (a malformed product: the page's key is then an earlier product's)."""
        if not isinstance(product, dict):
            return None
        value: Any = product
        for part in self.order_field.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
        product_id = product.get("Id")
        if not isinstance(value, str) or not isinstance(product_id, str | int) or isinstance(product_id, bool) \
                or not str(product_id):
            return None
        try:
            moment = _parse_time(value)
        except ValueError:
            return None
        if moment is None:
            return None
        if not _ODATA_TIME.fullmatch(value):  # (else written as the catalogue wrote it: its own precision, not ours)
            value = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return value, str(product_id)


# A time as the catalogue writes it, taken as an OData literal as it is (its digits are its precision: CDSE's are
# microseconds, and a cursor cut to milliseconds would ask the last product again).
_ODATA_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?Z", re.ASCII)
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII)


def _odata_id(product_id: str) -> str:
    """A product Id as an OData literal: an Edm.Guid (CDSE's Ids) as it is, anything else as a string."""
    return product_id if _GUID.fullmatch(product_id) else _odata_string(product_id)


def _parse_time(text: str | None) -> datetime | None:
    """A time the catalogue wrote, in UTC; ValueError for one that is not a time Python holds.
    Why: one written without a zone was read in the harvester host's local zone by astimezone (an hour early in Paris
    in winter): OData's times carry their zone, and hrwsi reads every time in UTC, so it is taken as UTC. And a valid
    ISO 8601 time of year 1 east of UTC, or of year 9999 west of it, is beyond Python's years in UTC: its OverflowError
    ended the run, run after run on the same window (found by exploratory testing)."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is beyond the years 1 to 9999 in UTC") from None


@dataclass(frozen=True)
class InputCandidate:
    """A catalogue product as a future hrwsi.input."""
    path: str
    scene_id: str
    tile: str | None
    mission: str | None
    measured_at: datetime | None
    published_at: datetime | None
    product_id: str | None = None


def _shown(value: Any) -> str:
    """A value of the catalogue's answer as the log shows it: short, control characters escaped."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return repr(_excerpt(input_checks.escaped(text), 120))


def _time_field(value: Any, label: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ProductUnusable(f"its {label} is not a date", _shown(value))
    try:
        return _parse_time(value)
    except ValueError:
        raise ProductUnusable(f"its {label} is not a date", _shown(value)) from None


def product_to_candidate(product: Any, *, path_field: str = "S3Path") -> InputCandidate:
    """Map one OData product: path = S3Path, tile and mission from the Name, measured_at =
    ContentDate.Start, published_at = PublicationDate. Raises ProductUnusable when the product is
    not what the OData API describes (not an object, no Name or path, a date that is not one): one
    such product is skipped, its page and window go on."""
    if not isinstance(product, dict):
        raise ProductUnusable("not a product (a JSON object)", _shown(product))
    name = product.get("Name")
    if not isinstance(name, str) or not name.strip():
        if name is None:
            raise ProductUnusable("no Name", f"Id {_shown(product.get('Id'))}")
        raise ProductUnusable("its Name is not a text", _shown(name))
    # (its scene is read from it: a control or invisible character at its end, "X.SAFE\x1b[2J", made a scene of its
    # own, and the scene a landing directory delivered as X.SAFE a second input; found by exploratory testing)
    if input_checks.REFUSED_CHARACTER.search(name) is not None:
        raise ProductUnusable("its Name holds a control or invisible character", _shown(name))
    # No fallback to the Name: it is relative, and the database takes absolute paths only.
    path = product.get(path_field)
    if not isinstance(path, str) or not path:
        raise ProductUnusable(f"no {path_field}" if path is None else f"its {path_field} is not a text",
                              "" if path is None else _shown(path))
    content = product.get("ContentDate")
    if content is not None and not isinstance(content, dict):
        raise ProductUnusable("its ContentDate is not an object", _shown(content))
    measured_at = _time_field((content or {}).get("Start"), "ContentDate.Start")
    published_at = _time_field(product.get("PublicationDate"), "PublicationDate")
    scene_id = scene_id_of(name)
    if not scene_id.strip():
        raise ProductUnusable("its Name has no scene in it", _shown(name))
    if len(scene_id.encode()) > input_checks.MAX_SCENE_ID_BYTES:
        # (the database refuses it, input_scene_id_is_at_most_500_bytes: its page's statement failed, and the run,
        # on the same window run after run, so that the source registered nothing more; found by exploratory testing)
        raise ProductUnusable(f"its Name's scene is longer than {input_checks.MAX_SCENE_ID_BYTES} bytes, the most a "
                              "scene id holds", _shown(name))
    tile, mission = tile_and_mission(name)
    product_id = product.get("Id")
    return InputCandidate(path=path, scene_id=scene_id, tile=tile, mission=mission, measured_at=measured_at,
                          published_at=published_at, product_id=None if product_id is None else str(product_id))


# ---------------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------------

@dataclass
class RetryPolicy:
    attempts: int = 5                # tries per request, the first included
    base_delay_s: float = 1.0        # doubled per retry, with jitter
    max_delay_s: float = 60.0        # cap, Retry-After included
    timeout_s: float = 60.0          # per request
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, repr=False)

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay_s)
        # "Full jitter": many harvesters that failed together do not retry together.
        return random.uniform(0, min(self.max_delay_s, self.base_delay_s * 2 ** retry))


def answered_number(value: Any) -> float | None:
    """A number a catalogue's side answered (a token's expires_in): a finite JSON number, or ASCII digits in a JSON
    string ("3599": OAuth2 servers that quote it, as Azure AD's v1 endpoint does; Keycloak, CDSE's, sends a JSON
    number); None for anything else. float() took any text: "1_0" as 10, " 300 ", "3e2", other scripts' digits
    ("\u0663\u0660\u0660" as 300), "inf" (found by review); a number written as text some other way is
    ambiguous, refused (NUMBER_AS_TEXT says how one is read)."""
    if isinstance(value, str):
        whole = ascii_decimal(value)
        return None if whole is None else float(whole)
    number = json_number(value)
    return number if math.isfinite(number) else None


NUMBER_AS_TEXT = ": a number as text is read in ASCII digits 0-9 alone"


def _retry_after(value: str | None) -> float | None:
    """Retry-After: delta-seconds (RFC 9110: 1*DIGIT, ASCII digits) or an HTTP date; None for anything else. float()
    read '1_0' as 10 and 'nan', a wait asyncio.sleep refuses (found by review)."""
    if not value:
        return None
    seconds = ascii_decimal(value.strip())
    if seconds is not None:
        return float(seconds)
    try:  # an HTTP date
        from email.utils import parsedate_to_datetime

        return (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
    except (TypeError, ValueError):
        return None


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL, the default port made explicit; a port that is not a number is None."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port


def _excerpt(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _error_message(text: str) -> str:
    """The message of an OData error answer ({"detail": ...} or {"error": {"message": ...}})."""
    try:
        answer = json.loads(text)
    except (ValueError, RecursionError):  # (not JSON; or nested deeper than the decoder goes: quoted as text)
        return _excerpt(text)
    if isinstance(answer, dict):
        detail = answer.get("detail") or (answer.get("error") or {}).get("message") or answer.get("message")
        if detail:
            return _excerpt(detail if isinstance(detail, str) else json.dumps(detail))
    return _excerpt(text)


class CatalogueClient:
    def __init__(self, base_url: str, session: aiohttp.ClientSession, *, auth: Auth | None = None,
                 retry: RetryPolicy | None = None, max_page_bytes: int = int(MAX_PAGE_MB * 2**20)):
        self.base_url = base_url.rstrip("/")
        self.session = session
        self.auth = auth or NoAuth()
        self.retry = retry or RetryPolicy()
        self.max_page_bytes = max_page_bytes
        self.requests = 0
        self.answered_at: datetime | None = None  # the catalogue's own time (HTTP Date) of its last page
        self.ids_in_filter = True  # a keyed page leaves out by `Id ne` what it would bring again (until refused)

    def origin(self) -> str:
        """Scheme, host and port of the source's URL: the only place its credentials are sent."""
        scheme, host, port = _origin(self.base_url)
        return f"{scheme}://{host}:{port}"

    def shown(self, url: str) -> str:
        """A URL for a message: redacted (shown_url), and no credential the server echoed in it."""
        return scrubbed(shown_url(url), self.auth.secrets())

    def _said(self, text: str) -> str:
        """What the server said, for a message: without any credential it echoed back."""
        return scrubbed(text, [*self.auth.secrets(), *_url_secrets(self.base_url)])

    def products_url(self, product_query: ProductQuery, after: str | None = None,
                     seen_there: Sequence[str] = ()) -> tuple[str, dict[str, str]]:
        """The URL of the Products collection and its query: `/Products` goes at the end of the
        source URL's path, and a query the source URL has (`?apikey=...`) is kept beside the
        OData one (it was appended after it: `?apikey=X/Products&$filter=...`)."""
        parts = urlsplit(self.base_url)
        url = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/Products", "", ""))
        return url, {**dict(parse_qsl(parts.query, keep_blank_values=True)), **product_query.params(after, seen_there)}

    async def products(self, product_query: ProductQuery) -> AsyncIterator[list[dict]]:
        """The matching products, page by page, to the end (the last page has no @odata.nextLink).

        Keyset paging: the next page is the products from the last one of this page on in the query's order
        (ProductQuery.keyset_clause: its date field `ge` the last product's, the products of that instant already
        seen left out by `Id ne`, up to EXCLUDED_IDS_MAX of them), asked by the client, not the server's next link;
        whatever the page brings again is left out by its Id here too. A catalogue that refuses `Id ne` is asked
        the same page without it, and no page of this client names Ids again. CDSE's link pages by
        `$skip`: a product withdrawn between two pages shifted the result set, and the product at the page
        boundary was never asked for (an insertion, one seen twice); only a product published within the next
        run's overlap was caught again (found by exploratory testing). A page none of whose products says where it
        lies (no Id, no order field: malformed) is followed by its link, as before; so is the rest of a window
        whose keyed page is refused, or brings nothing new (a page's worth of products of one instant), said in
        the log.

        A next link to another origin than the source's URL is refused (CatalogueError naming it):
        the auth headers go with every request, and a catalogue (or whoever wrote its answer) must
        not be able to send the source's credentials elsewhere; browsers and HTTP clients drop them
        on a redirect to another host for the same reason. A next page already asked for (a link
        followed twice: a catalogue that ignores the query) is a loop: refused too, rather than asked
        again until the run's timeout."""
        url, query_params = self.products_url(product_query)
        params: dict[str, str] | None = query_params
        asked: set[str] = set()
        by_link: str | None = None  # the server's next link, while the page asked by key has not answered
        keyset = True
        boundary: str | None = None  # the order field's value of the last product seen
        at_boundary: list[str] = []  # the Ids of the products seen at that instant
        seen: set[str] = set()  # the Ids of the products this window brought (a product is yielded once)
        without_ids: tuple[str, dict[str, str]] | None = None  # the page asked, without its `Id ne` clauses
        while url:
            try:
                page = await self.get_json(url, params)
            except (CatalogueUnavailable, CatalogueAuthError, PageTooLarge):
                raise
            except CatalogueError as error:
                if without_ids is not None:
                    logger.info("catalogue %s refused a page whose filter leaves out products by Id (%s): asked "
                                "again without, as every page of this source's run", self.origin(), error)
                    self.ids_in_filter = False
                    (url, params), without_ids = without_ids, None
                    continue
                if by_link is None:
                    raise
                self._paged_by_links("refused a page asked by key", error)
                keyset, url, params, by_link = False, by_link, None, None
                continue
            items = page.get("value") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise CatalogueError(f"{self.shown(url)} answered without a 'value' list: "
                                     f"{self._said(_excerpt(json.dumps(page)[:1000]))}")
            keyed, by_link, without_ids = by_link is not None, None, None
            asked.add(_request_of(url, params))
            link = page.get("@odata.nextLink")
            following = None
            if link is not None:
                if not isinstance(link, str) or not link:
                    raise CatalogueError(f"{self.shown(url)} answered an @odata.nextLink that is not a URL: "
                                         f"{self._said(_shown(link))}")
                following = urljoin(url if params is None else f"{url}?{urlencode(params)}", link)
                if _origin(following) != _origin(self.base_url):
                    raise CatalogueError(f"{self.shown(url)} names a next page at another origin, "
                                         f"{_shown(self.shown(following))}: not followed, so that the source's "
                                         f"credentials go to {self.origin()} only")
            # (a page asked from `boundary` on brings the products of that instant seen already again: left out)
            items, last, at_last = await _fresh_products(items, seen, product_query, want_key=following is not None)
            if keyed and not items and following is not None:
                # A page's worth of products of one instant: asked from that instant again, the same page would come
                # back. The rest of the window goes by this page's link (the key's query, past what it brought).
                self._paged_by_links("brought no product not yet seen (a page's worth of one instant)", None)
                keyset, url, params = False, following, None
                self._refuse_a_loop(url, asked)
                continue
            yield items
            if following is None:
                return
            if last is not None:
                at_boundary = list(dict.fromkeys([*at_boundary, *at_last])) if last[0] == boundary else at_last
                boundary = last[0]
            if last is not None and keyset:
                # (the same `ge` may be asked again: never a loop, as a page that brings nothing new ends keyed paging)
                url, params = self.products_url(product_query, boundary)
                if self.ids_in_filter and 0 < len(at_boundary) <= EXCLUDED_IDS_MAX:
                    without_ids = url, params
                    url, params = self.products_url(product_query, boundary, at_boundary)
                by_link = following
            else:
                url, params = following, None  # the next link carries the query
                self._refuse_a_loop(url, asked)

    def _refuse_a_loop(self, url: str, asked: set[str]) -> None:
        if url in asked:
            raise CatalogueError(f"the catalogue's next page names a page already asked for in this window, "
                                 f"{_shown(self.shown(url))} (a paging loop: a catalogue that ignores the filter?): "
                                 "stopped")

    def _paged_by_links(self, why: str, error: CatalogueError | None) -> None:
        """The rest of a window paged by the catalogue's next links: a catalogue that refuses the key's clause, or
        a page's worth of products of one instant; said, because a product withdrawn meanwhile may then be missed."""
        logger.warning("catalogue %s %s%s: the rest of this window is paged by the catalogue's next links; a product "
                       "withdrawn while it is paged may be missed", self.origin(), why, f" ({error})" if error else "")

    async def get_json(self, url: str, params: dict[str, str] | None = None) -> Any:
        reauthenticated = False
        last = "no answer"
        shown = self.shown(url)
        for attempt in range(self.retry.attempts):
            self.requests += 1
            headers = {"Accept": "application/json", **await self.auth.headers(self.session)}
            retry_after = None
            try:
                async with self.session.get(url, params=params, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=self.retry.timeout_s)) as response:
                    if response.status == 200:
                        self.answered_at = _http_date(response.headers.get("Date"))
                        answer = await self._page(response, shown)
                        if not isinstance(answer, _NoJson):
                            return answer
                        # A gateway's or proxy's HTML page sent as 200 ("maintenance"), or an answer broken off:
                        # retried as a 5xx is. It failed the run at once, and a near-real-time source waited for
                        # its next run, an hour, for a page a retry a second later would have got (found by
                        # exploratory testing).
                        last = answer.message
                    else:
                        last, retry_after, renew = await self._refused(response, shown, reauthenticated)
                        if renew:  # an expired or revoked token: a new one, at once, once
                            reauthenticated = True
                            continue
            except TimeoutError:
                last = f"no answer within {self.retry.timeout_s:g} s"
            except aiohttp.ClientConnectionError as error:
                last = f"connection failed: {self._said(scrubbed(str(error), [url]))}"
            if attempt + 1 < self.retry.attempts:
                delay = self.retry.delay(attempt, retry_after)
                logger.warning("catalogue %s: %s (attempt %d of %d); retrying in %.1f s", shown, last, attempt + 1,
                               self.retry.attempts, delay)
                await self.retry.sleep(delay)
        raise CatalogueUnavailable(f"{shown} failed {self.retry.attempts} time(s); last: {last}")

    async def _refused(self, response: aiohttp.ClientResponse, shown: str,
                       reauthenticated: bool) -> tuple[str, float | None, bool]:
        """An answer other than 200: raises what is not retried (credentials refused, another 4xx); else what it
        said, its Retry-After, and whether it is a first 401, answered with a new token at once."""
        body, _ = await _read_at_most(response, ERROR_ANSWER_MAX_BYTES)
        text = self._said(body.decode("utf-8", "replace"))
        if response.status == 401 and not reauthenticated:
            self.auth.invalidate()
            return f"401 {_error_message(text)}", None, True
        if response.status == 401 or response.status == 403:
            raise CatalogueAuthError(f"{shown} refused the credentials ({self.auth.describe()}): "
                                     f"{response.status} {_error_message(text)}")
        if response.status != 429 and response.status < 500:
            raise CatalogueError(f"{shown} refused the request: {response.status} {response.reason}: "
                                 f"{_error_message(text)}")
        retry_after = _retry_after(response.headers.get("Retry-After")) if response.status == 429 else None
        return f"{response.status} {response.reason}: {_error_message(text)}", retry_after, False

    async def _page(self, response: aiohttp.ClientResponse, shown: str) -> Any:
        """A 200 answer, read up to the page limit and parsed (_NoJson if it is not JSON); larger, it is refused
        (PageTooLarge), not retried: it would be as large again."""
        too_large = PageTooLarge(f"{shown} answered a page larger than {self.max_page_bytes / 2**20:g} MB (config "
                                 "max_page_mb): refused, not read further; ask smaller pages (config top) or raise "
                                 "max_page_mb")
        page = _StreamedPage()
        try:
            async for chunk in _chunks_within(response, self.max_page_bytes, STREAM_PARSE_CHUNK_BYTES):
                await page.feed(chunk)
            return await page.parsed()
        except _OverLimit:
            raise too_large from None
        except (ValueError, RecursionError):
            text = self._said(bytes(page.head[:2000]).decode("utf-8", "replace"))
            return _NoJson(f"answered 200 but no JSON: {_excerpt(text)}")


@dataclass(frozen=True)
class _NoJson:
    """A 200 answer that is no JSON (get_json retries it)."""
    message: str


async def _fresh_products(items: list, seen: set[str], product_query: ProductQuery,
                          want_key: bool) -> tuple[list, tuple[str, str] | None, list[str]]:
    """The products of a page not yet seen in this window (their Ids then added to `seen`), the key of the last
    of them that has one (when the next page is asked by key), and the Ids of the page's products at that key's
    instant (the next page leaves them out). A page of thousands in a worker thread: read on the event loop,
    600,000 held it a third of a second."""
    def fresh() -> tuple[list, tuple[str, str] | None, list[str]]:
        kept = []
        for item in items:
            got = _id_of(item)
            if got is None or got not in seen:
                kept.append(item)
                if got is not None:
                    seen.add(got)
        last = next((key for key in map(product_query.key_of, reversed(kept)) if key is not None), None) \
            if want_key else None
        at_last = []
        for key in map(product_query.key_of, reversed(items) if last is not None else ()):
            if key is not None and key[0] == last[0]:  # (the page is in order: that instant's products are together)
                at_last.append(key[1])
            elif key is not None:
                break
        return kept, last, at_last

    return await asyncio.to_thread(fresh) if len(items) > 1000 else fresh()


# At most so many Ids of products already seen are left out by a keyed page's filter (`Id ne`, some 50 characters
# each in the URL); more products of one instant than that are asked again and left out here, by their Ids.
EXCLUDED_IDS_MAX = 20


def _id_of(product: Any) -> str | None:
    """A product's Id as text, None if it has none (ProductQuery.key_of reads it so too)."""
    got = product.get("Id") if isinstance(product, dict) else None
    return str(got) if isinstance(got, str | int) and not isinstance(got, bool) and str(got) else None


def _request_of(url: str, params: dict[str, str] | None) -> str:
    """One request, as the paging loop check compares them."""
    return url if params is None else f"{url}?{urlencode(params)}"


def _http_date(value: str | None) -> datetime | None:
    """An HTTP Date header as an aware UTC time, None if absent or unreadable."""
    if not value:
        return None
    try:
        from email.utils import parsedate_to_datetime

        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _harvested_up_to(name: str, end: datetime, catalogue_time: datetime | None) -> datetime:
    """How far a near-real-time window is recorded as harvested: its end, or the catalogue's own time when its
    first page was answered, if that is earlier (its clock behind ours). Why: publication dates are stamped by the
    catalogue's clock, and with the window recorded up to ours, a product it published after our query, stamped
    before our window's end, fell before the next window's start once the skew passed the overlap: never asked for
    (found by exploratory testing). The Date header counts whole seconds: its time was before the next one."""
    if catalogue_time is None or catalogue_time + timedelta(seconds=1) > end:
        return end
    behind = (end - catalogue_time).total_seconds()
    if behind > CLOCK_SKEW_WARNING_S:
        logger.warning("catalogue %s: its clock is %.0f s behind ours (its Date header); the window is recorded as "
                       "harvested up to its time, %s", name, behind, f"{catalogue_time:%Y-%m-%dT%H:%M:%S}Z",
                       extra=task_fields(source=name))
    return catalogue_time


# A catalogue clock behind ours by more than this is said in the log (less is latency and the Date's resolution).
CLOCK_SKEW_WARNING_S = 60.0


def _url_secrets(url: str) -> list[str]:
    """The credentials a URL carries (its password, its query's values but OData's), to scrub."""
    try:
        parts = urlsplit(url)
        found = [parts.username or "", parts.password or ""]
    except ValueError:
        return []
    return found + [value for key, value in parse_qsl(parts.query) if not key.startswith("$")]


# ---------------------------------------------------------------------------------------------
# Harvesting a catalogue source
# ---------------------------------------------------------------------------------------------

@dataclass
class CatalogueHarvestReport:
    source: str
    windows: list[str] = field(default_factory=list)
    pages: int = 0
    products: int = 0
    inputs: int = 0
    skipped: int = 0
    more_backfill_days: bool = False
    skip_reasons: dict[str, int] = field(default_factory=dict)   # reason -> products skipped for it
    skip_examples: list[str] = field(default_factory=list)       # the first few, with what they had

    def summary(self) -> str:
        more = "; the backfill goes on" if self.more_backfill_days else ""
        return (f"{self.products} product(s) in {self.pages} page(s) for {', '.join(self.windows) or 'nothing'}, "
                f"{self.inputs} new input(s), {self.skipped} skipped{more}")

    def skip(self, product: Any, reason: str, message: str) -> None:
        self.skipped += 1
        self.skip_reasons[reason] = self.skip_reasons.get(reason, 0) + 1
        if len(self.skip_examples) < SKIPPED_EXAMPLES:
            name = product.get("Name") if isinstance(product, dict) else None
            self.skip_examples.append(f"{_shown(name) if isinstance(name, str) else 'a product'}: {message}")

    def log_skipped(self) -> None:
        """The products skipped in the run, in one line: a catalogue that answers thousands of
        broken products must not write thousands of lines."""
        if not self.skipped:
            return
        reasons = "; ".join(f"{count} {reason}" for reason, count in
                            sorted(self.skip_reasons.items(), key=lambda item: -item[1]))
        logger.warning("catalogue %s: %d product(s) skipped (%s), e.g. %s; the others are registered", self.source,
                       self.skipped, reasons, "; ".join(self.skip_examples),
                       extra=task_fields(source=self.source, failure=reasons))


# Skipped products shown by name in the run's one line; the others are counted by reason.
SKIPPED_EXAMPLES = 3


def _config(row: Any) -> dict:
    return config_of(row["config"])


def _max_page_bytes(config: dict) -> int:
    value = config.get("max_page_mb", MAX_PAGE_MB)
    megabytes = json_number(value)  # (a JSON number: float() took "1_0" and "inf")
    if not 0 < megabytes < float("inf"):
        raise CatalogueError(f"config max_page_mb = {_shown(value)} is not a positive number of megabytes")
    return int(megabytes * 2**20)


# The bounds of a catalogue source's retry settings. The database takes any JSON: timeout_s = 1e308 or
# max_attempts = 10**12 were accepted, and a run of such a source went on (retrying a dead catalogue,
# waiting on a silent one) until HRWSI_SOURCE_TIMEOUT_S stopped it, run after run; "1e400" (infinity to
# Python) ended it in an OverflowError with a traceback (found by review). A source with a value outside
# them is set aside before it runs, naming the key and the bound, as a landing directory's settle_s and
# scan_interval_s beyond a week are (landing_source.refuse_absurd_durations). An hour is far more than a
# request or a wait between two tries needs (a whole run is stopped after HRWSI_SOURCE_TIMEOUT_S, 900 s by
# default), and 100 tries, as a routine's max_attempts, more than a catalogue that answers needs.
MAX_RETRY_WAIT_S = 3600
MAX_REQUEST_ATTEMPTS = 100
# And the paging settings: int() read "top": "1_0" as 10, "top": true as 1 and "top": 2.7 as 2, and "top": "abc"
# failed each run with "invalid literal for int()", said nowhere before it ran (found by review).
MAX_TOP = 10_000
# And the page size a run reads at most (max_page_mb, above): 1e300 was taken, a page as good as unbounded, so that an
# endless answer grew the harvester until the OOM killer took it (and the other services of `hrwsi up`), the very
# fault the limit is for; 1e-9 was 0 bytes, every page refused at each run (found by exploratory testing). From 10 kB
# (a page of a few products) to 1 GB, 50 times the largest page `top` can ask (10,000 products of about 2 kB).
MAX_PAGE_MB_BOUNDS = (0.01, 1024)
# A back-fill run's days: at most 100 years, the one limit a condition's windows and the CLI's --days take
# (MAX_WINDOW_DAYS); it was 36,600 here (found by review).
# key: (least, whether the least itself is taken, most, whole numbers only, what it counts)
RETRY_SETTING_BOUNDS: dict[str, tuple[float, bool, float, bool, str]] = {
    "top": (1, True, MAX_TOP, True, "a whole number of products a page"),
    "max_pages_per_run": (1, True, 100_000, True, "a whole number of pages"),
    "backfill_days_per_run": (1, True, schedules.MAX_WINDOW_DAYS, True, "a whole number of days"),
    "max_attempts": (1, True, MAX_REQUEST_ATTEMPTS, True, "a whole number of tries"),
    "timeout_s": (0, False, MAX_RETRY_WAIT_S, False, "a number of seconds"),
    "retry_base_s": (0, True, MAX_RETRY_WAIT_S, False, "a number of seconds"),
    "retry_max_s": (0, True, MAX_RETRY_WAIT_S, False, "a number of seconds"),
    "max_page_mb": (MAX_PAGE_MB_BOUNDS[0], True, MAX_PAGE_MB_BOUNDS[1], False, "a number of megabytes"),
}


def refuse_absurd_retry_settings(config: dict) -> None:
    """Raise ConfigUnreadable naming config.top, max_pages_per_run, backfill_days_per_run, max_attempts, timeout_s,
    retry_base_s, retry_max_s or max_page_mb and its bounds when it is not a JSON number within them (RETRY_SETTING_BOUNDS): a
    number written as text ("10") is refused too, saying so, as the file's own numbers are JSON's."""
    for key, (least, least_taken, most, whole, counts) in RETRY_SETTING_BOUNDS.items():
        if key not in config:
            continue
        value = config[key]
        number = json_number(value)
        within = (number >= least if least_taken else number > least) and number <= most
        if not within or (whole and not number.is_integer()):
            bound = f"{'from' if least_taken else 'above'} {least:g} to {most:,g}"
            text = ", writing a JSON number, not text" if isinstance(value, str) else ""
            raise ConfigUnreadable(f"config.{key} = {json.dumps(value)[:40]} is not {counts} {bound}: correct it{text} "
                                   "(the source is set aside until then)")


# The catalogue's text settings, and what each must be. area_wkt stands in the query's filter as it is, inside a
# geography literal: a quote in it ended the literal, and what followed was the filter's own ("...') or (Name eq 'x"
# asked for every product so named, past the window and the collection); a JSON object stood there as Python wrote
# it. A product_type or path_field that was no text ended each run in AttributeError or TypeError, after `hrwsi
# sources` had said nothing of it (found by exploratory testing).
_WKT = re.compile(r"[A-Za-z ]+\([0-9eE.+\- ,()]*\)", re.ASCII)
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
TEXT_SETTINGS = {
    "product_type": (lambda value: bool(value.strip()) and input_checks.REFUSED_CHARACTER.search(value) is None,
                     "a product type (text without control characters)"),
    "area_wkt": (lambda value: _WKT.fullmatch(value) is not None,
                 "a WKT geometry in WGS84, POLYGON((lon lat, ...)): letters, then numbers, spaces, commas and "
                 "parentheses"),
    "path_field": (lambda value: _FIELD_NAME.fullmatch(value) is not None, "a product's field name, like S3Path"),
}


def refuse_unreadable_text_settings(config: dict) -> None:
    """Raise ConfigUnreadable naming config.product_type, area_wkt or path_field when it is not the text it must be
    (TEXT_SETTINGS)."""
    for key, (fits, what) in TEXT_SETTINGS.items():
        if key in config and not (isinstance(config[key], str) and fits(config[key])):
            raise ConfigUnreadable(f"config.{key} = {_shown(config[key])} is not {what}: correct it (the source is set "
                                   "aside until then)")


def _client_options(config: dict) -> RetryPolicy:  # (its bounds checked first: refuse_absurd_retry_settings)
    return RetryPolicy(attempts=int(config.get("max_attempts", 5)), base_delay_s=float(config.get("retry_base_s", 1.0)),
                       max_delay_s=float(config.get("retry_max_s", 60.0)), timeout_s=float(config.get("timeout_s", 60.0)))


@dataclass
class _Run:
    """What one harvest run shares between its windows."""
    pool: asyncpg.Pool
    client: CatalogueClient
    row: Any
    config: dict
    now: datetime
    claim_token: uuid.UUID
    report: CatalogueHarvestReport
    max_pages: int


async def harvest_catalogue_source(pool: asyncpg.Pool, row: Any, *, now: datetime,
                                   session_factory: Callable[[], aiohttp.ClientSession] | None = None,
                                   retry: RetryPolicy | None = None,
                                   claim_token: uuid.UUID) -> CatalogueHarvestReport:
    """Harvest one catalogue source (a hrwsi.harvest_source row): the near-real-time window (last
    success - overlap, now] by publication date, or the next backfill day(s) by sensing date. Each
    page becomes inputs in one statement (committed at once: a failure later loses nothing, and the
    window asked again creates no duplicates); each complete window is recorded as progress under
    the run's claim (hrwsi.harvest.sources): a run whose claim was taken over stops (ClaimLost),
    and so does a run whose source was deactivated or deleted (SourceWithdrawn), between pages.
    A product the harvest cannot take is skipped with its reason; the run's skipped products are
    logged in one line. A run asks `max_pages_per_run` pages at most (MAX_PAGES_PER_RUN)."""
    name, config = row["name"], _config(row)
    refuse_absurd_retry_settings(config)  # (before anything is asked, whatever retry policy is given)
    refuse_unreadable_text_settings(config)
    report = CatalogueHarvestReport(name)
    base = dict(collection=config["collection"], product_type=config.get("product_type"),
                tiles=tuple(config.get("tiles") or ()), area_wkt=config.get("area_wkt"),
                top=int(config.get("top", 100)))
    auth = auth_from_config(config.get("auth"), name)
    try:
        async with (session_factory or aiohttp.ClientSession)() as session:
            client = CatalogueClient(config["url"], session, auth=auth, retry=retry or _client_options(config),
                                     max_page_bytes=_max_page_bytes(config))
            run = _Run(pool, client, row, config, now, claim_token, report,
                       int(config.get("max_pages_per_run", MAX_PAGES_PER_RUN)))
            if row["mode"] == "backfill":
                per_run = int(config.get("backfill_days_per_run", 1))
                days = schedules.backfill_days(row["backfill_cursor"], row["backfill_from"], row["backfill_to"],
                                               per_run)
                for day in days:
                    start, end = schedules.day_window(day)
                    resume_at = row["backfill_resume_at"]
                    if resume_at is not None and start < resume_at < end and day == days[0]:
                        start = resume_at  # where the day's last run stopped at its page limit
                    await _harvest_window(run, ProductQuery(**base, sensed_after=start, sensed_before=end,
                                                            order_by="ContentDate/Start asc"), resume_day=True)
                    report.windows.append(f"sensed on {day}")
                    await _record_progress(pool, claim_token, name, None, day + timedelta(days=1))
                next_day = (days[-1] + timedelta(days=1)) if days else (row["backfill_cursor"] or row["backfill_from"])
                report.more_backfill_days = next_day <= row["backfill_to"]
            else:
                start, end = schedules.near_real_time_window(now, row["last_success_at"], row["overlap"],
                                                             row["first_lookback"])
                catalogue_time = await _harvest_window(
                    run, ProductQuery(**base, published_after=start, published_before=end), progress_up_to=end)
                report.windows.append(f"published {start:%Y-%m-%dT%H:%M:%SZ} to {end:%Y-%m-%dT%H:%M:%SZ}")
                await _record_progress(pool, claim_token, name, _harvested_up_to(name, end, catalogue_time), None)
    finally:
        report.log_skipped()  # a run that failed or stopped half-way says what it skipped too
    return report


async def _record_progress(pool: asyncpg.Pool, claim_token: uuid.UUID, name: str, success_at: datetime | None,
                           next_day: date | None, resume_at: datetime | None = None) -> None:
    async with pool.acquire() as conn:
        if await conn.fetchval(query("harvest_source_progress"), name, success_at, next_day, claim_token,
                               resume_at) is None:
            raise ClaimLost(f"source {name}: its claim lapsed and another harvester runs it now; this run stops "
                            "without recording its progress")


async def _still_ours(conn: asyncpg.Connection, run: _Run) -> None:
    """Between two pages: the source is still active, still there, and still this run's."""
    state = await conn.fetchrow(query("harvest_source_run_goes_on"), run.row["name"], run.claim_token)
    done = f"stopped after {run.report.pages} page(s); the {run.report.inputs} input(s) it registered stay"
    if state is None:
        raise SourceWithdrawn(f"source {run.row['name']} was deleted during its run: {done}", deleted=True)
    if not state["active"]:
        raise SourceWithdrawn(f"source {run.row['name']} was deactivated during its run: {done}", deleted=False)
    if not state["ours"]:
        raise ClaimLost(f"source {run.row['name']}: its claim lapsed and another harvester runs it now; this run "
                        "stops")


async def _harvest_window(run: _Run, product_query: ProductQuery, progress_up_to: datetime | None = None,
                          resume_day: bool = False) -> datetime | None:
    """Register the window's products, page by page; returns the catalogue's own time (HTTP Date) when it
    answered the first page, None if it did not say. When the run reaches its page limit, the
    products up to the last page's newest are all registered (the window is asked in that order),
    and that is recorded, so that the next run goes on from there instead of asking the same pages
    again: `progress_up_to`, a near-real-time window, by publication; `resume_day`, a backfill
    day, by sensing time."""
    row, report = run.row, run.report
    path_field = run.config.get("path_field", "S3Path")
    newest: datetime | None = None
    pages_before = report.pages
    newest_sensed: datetime | None = None
    catalogue_time: datetime | None = None
    async for page in run.client.products(product_query):
        if report.pages == pages_before:
            catalogue_time = run.client.answered_at
        if report.pages >= run.max_pages:
            raise CatalogueError(f"stopped after {run.max_pages} page(s), the most one run asks for "
                                 f"(config max_pages_per_run); the {report.inputs} input(s) registered stay, "
                                 + await _went_on(run, product_query, progress_up_to, newest,
                                                  newest_sensed if resume_day else None))
        report.pages += 1
        report.products += len(page)
        candidates = []
        # (mapped in a thread, in the page's order: see _map_page; what is left here is bookkeeping)
        mapped = await _mapped_in_a_thread(page, path_field, run.now)
        for index, (product, candidate, problem) in enumerate(mapped):
            if index % PRODUCTS_PER_YIELD == PRODUCTS_PER_YIELD - 1:
                await asyncio.sleep(0)  # the other tasks of the process (services in `hrwsi up`) go on
            if candidate is None:
                report.skip(product, *problem)
                continue
            if candidate.published_at is not None:
                newest = max(newest or candidate.published_at, candidate.published_at)
            if candidate.measured_at is not None:
                newest_sensed = max(newest_sensed or candidate.measured_at, candidate.measured_at)
            if problem is not None:
                report.skip(product, *problem)
                continue
            candidates.append(candidate)
        async with run.pool.acquire() as conn:
            for start in range(0, len(candidates), REGISTER_BATCH):
                batch = candidates[start:start + REGISTER_BATCH]
                counts = await conn.fetch(
                    query("harvest_register_inputs"), [c.path for c in batch], [c.tile for c in batch],
                    [c.mission for c in batch], [c.measured_at for c in batch],
                    [c.published_at for c in batch], [c.scene_id for c in batch], row["product_type"],
                    run.now, row["name"], row["mode"] == "backfill")
                report.inputs += sum(c["created"] for c in counts)
            await _still_ours(conn, run)
    return catalogue_time


async def _mapped_in_a_thread(page: list, path_field: str,
                              now: datetime) -> list[tuple[Any, InputCandidate | None, tuple[str, str] | None]]:
    """_map_page in a thread, stopped when the await is cancelled (a harvester stopping, a run given up): a
    thread cannot be cancelled, and a page of millions of products went on being mapped after the run ended,
    shutdown waited for it and the next run overlapped it (found by review). It looks at the event every
    PRODUCTS_PER_YIELD products."""
    stop = threading.Event()
    try:
        return await asyncio.to_thread(_map_page, page, path_field, now, stop)
    except asyncio.CancelledError:
        stop.set()
        raise


def _map_page(page: list, path_field: str, now: datetime,
              stop: threading.Event | None = None) -> list[tuple[Any, InputCandidate | None, tuple[str, str] | None]]:
    """Each product of a page, in its order, with its candidate (None: not a product hrwsi can read) and why
    it is skipped ((reason, message); None: it is registered). Run in a thread (_harvest_window): mapped on
    the event loop, PRODUCTS_PER_YIELD products held the loop, and with it every service of `hrwsi up`, some
    20-50 ms at a time (names, dates and paths parsed and checked per product; found by exploratory
    testing). Pure Python, it lets the loop's thread take the GIL back every switch interval (5 ms). Once
    `stop` is set (the await cancelled: _mapped_in_a_thread) it ends within PRODUCTS_PER_YIELD products,
    returning what it mapped, which nobody reads."""
    mapped: list[tuple[Any, InputCandidate | None, tuple[str, str] | None]] = []
    for index, product in enumerate(page):
        if stop is not None and index % PRODUCTS_PER_YIELD == 0 and stop.is_set():
            break
        try:
            candidate = product_to_candidate(product, path_field=path_field)
        except ProductUnusable as problem:
            mapped.append((product, None, (problem.reason, str(problem))))
            continue
        unusable = _unusable(candidate, now)
        mapped.append((product, candidate, None if unusable is None else (unusable[0], f"{unusable[0]}{unusable[1]}")))
    return mapped


async def _went_on(run: _Run, product_query: ProductQuery, progress_up_to: datetime | None,
                   newest_published: datetime | None, newest_sensed: datetime | None) -> str:
    """A run stopped at its page limit: records how far it got, if it got further than where it
    started (only forward: a catalogue that ignored the filter must not move progress back), and
    says where the next run asks from."""
    name = run.row["name"]
    floor = run.row["last_success_at"] or product_query.published_after
    if progress_up_to is not None and newest_published is not None \
            and (floor is None or newest_published > floor) and newest_published < progress_up_to:
        await _record_progress(run.pool, run.claim_token, name, newest_published, None)
        return (f"the next run asks from {newest_published:%Y-%m-%dT%H:%M:%S}Z (the newest publication registered) "
                "minus the overlap")
    start, end = product_query.sensed_after, product_query.sensed_before
    if newest_sensed is not None and start is not None and end is not None:
        if start < newest_sensed < end:
            await _record_progress(run.pool, run.claim_token, name, None, None, newest_sensed)
            return (f"the next run asks the day again from {newest_sensed:%Y-%m-%dT%H:%M:%S}Z (the sensing time of "
                    "the last product registered)")
        if newest_sensed == start:
            return (f"more products than {run.max_pages} page(s) hold were all sensed at {start:%Y-%m-%dT%H:%M:%S}Z: "
                    "the next run asks the same again; raise max_pages_per_run")
    return "the next run asks this window again, from its start"


# The most products one statement registers. A catalogue's page of 100,000 products was one
# statement that made 100,000 inputs and their tasks: past the pool's 60 s command timeout, it
# failed the run ("TimeoutError: no detail given") at every try (found by exploratory testing,
# 2026-12-05). Batches commit one by one; a run stopped between them leaves its window to be asked
# again, and what was registered is found registered (the insert is idempotent).
REGISTER_BATCH = 2_000


def _unusable(candidate: InputCandidate, now: datetime) -> tuple[str, str] | None:
    """Why the database would refuse this product as an input (checked first, so that one bad
    product does not sink its page's statement): the reason, and what the product had."""
    if candidate.measured_at is None:
        return "no ContentDate.Start", ""
    if candidate.published_at is not None and candidate.measured_at > candidate.published_at:
        return "sensed after its publication date", ""
    if candidate.measured_at > now + timedelta(hours=1) or (
            candidate.published_at is not None and candidate.published_at > now + timedelta(hours=1)):
        return "sensed or published in the future", ""
    if candidate.measured_at.year < 1950:
        return "sensing date before 1950", ""
    if (unstorable := input_checks.path_problem(candidate.path)) is not None:
        return unstorable, f": {input_checks.escaped(candidate.path)!r}"
    return None
