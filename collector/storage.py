"""Writers to InfluxDB: the v2 write API through influxdb-client, and the 1.x ``/write`` endpoint; and
reads by InfluxQL (the FHIR export, and ECG strips for alert pictures).

Both take the same line-protocol lines (see ``collector.points``). A rejected write (4xx) raises
WriteRejected, which the ingest loop dead-letters; an unreachable or failing server (5xx, timeout)
raises StorageUnavailable, which the ingest loop retries with backoff without acknowledging the message.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
import urllib.request
from typing import Any, Protocol

import aiohttp
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

from healthhut.collector.config import Influx1Config, Influx2Config

log = logging.getLogger(__name__)


class StorageError(Exception):
    def __init__(
        self, message: str, *, status: int | None = None, body: str = "", retry_after: float | None = None
    ) -> None:
        self.status = status
        self.body = body[:500]
        # Seconds the server asked us to wait (its Retry-After header), if it said.
        self.retry_after = retry_after
        super().__init__(message)


class StorageUnavailable(StorageError):
    """Try again later: the server is down, slow, or failing (5xx, 429)."""


class QueryFailed(Exception):
    """A read by InfluxQL failed: the server could not be reached, or it refused the query."""


class WriteRejected(StorageError):
    """The server refused these points (4xx): retrying the same write cannot succeed."""


class Writer(Protocol):
    async def write(self, lines: list[str]) -> None: ...

    async def close(self) -> None: ...


def retry_after_seconds(header: str | None) -> float | None:
    """A Retry-After header's delay in seconds; None if absent or not a number of seconds (the HTTP-date
    form is rare from databases and the caller's own backoff covers it)."""
    if header is None:
        return None
    try:
        seconds = float(header.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), 300.0)


def _classify(status: int, body: str, where: str, retry_after: str | None = None) -> StorageError:
    if status in (408, 429) or status >= 500:
        return StorageUnavailable(
            f"{where} answered {status}", status=status, body=body, retry_after=retry_after_seconds(retry_after)
        )
    return WriteRejected(f"{where} rejected the write with {status}: {body[:200]}", status=status, body=body)


class Influx1Writer:
    """InfluxDB 1.x: the lines posted to ``/write`` with aiohttp."""

    def __init__(self, config: Influx1Config) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        auth = aiohttp.BasicAuth(config.username, config.password or "") if config.username else None
        self._auth = auth

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
        return self._session

    async def ensure_database(self) -> None:
        await self._post("/query", data={"q": f'CREATE DATABASE "{self.config.database}"'}, expect=200)

    async def write(self, lines: list[str]) -> None:
        if not lines:
            return
        body = "\n".join(lines).encode()
        await self._post("/write", params={"db": self.config.database, "precision": "ns"}, body=body, expect=204)

    async def _post(
        self,
        path: str,
        *,
        params: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        body: bytes | None = None,
        expect: int,
    ) -> None:
        url = self.config.url.rstrip("/") + path
        try:
            async with self._http().post(
                url, params=params, data=body if body is not None else data, auth=self._auth
            ) as response:
                if response.status != expect:
                    raise _classify(response.status, await response.text(), url, response.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageUnavailable(f"{url}: {exc or type(exc).__name__}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Influx2Writer:
    """InfluxDB 2.x/3.x/Cloud through influxdb-client's async write API."""

    def __init__(self, config: Influx2Config) -> None:
        self.config = config
        self._client = InfluxDBClientAsync(
            url=config.url, token=config.token, org=config.org, timeout=int(config.timeout_s * 1000)
        )
        self._api = self._client.write_api()

    async def write(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            await self._api.write(bucket=self.config.bucket, org=self.config.org, record="\n".join(lines).encode())
        except InfluxDBError as exc:
            status = exc.response.status if exc.response is not None else 0
            raise _classify(status, exc.message or str(exc), self.config.url, exc.retry_after) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StorageUnavailable(f"{self.config.url}: {exc or type(exc).__name__}") from exc

    async def close(self) -> None:
        await self._client.close()


def make_writer(config: Influx1Config | Influx2Config) -> Influx1Writer | Influx2Writer:
    if isinstance(config, Influx1Config):
        return Influx1Writer(config)
    return Influx2Writer(config)


def query_influxql(storage: Influx1Config | Influx2Config, query: str) -> dict[str, Any]:
    """Read by InfluxQL through ``/query`` (1.x, and 2.x/3.x through their compatibility endpoint);
    QueryFailed when the server cannot be reached or refuses the query."""
    params = {"q": query, "epoch": "ns"}
    headers = {}
    if isinstance(storage, Influx1Config):
        params["db"] = storage.database
        if storage.username:
            params |= {"u": storage.username, "p": storage.password or ""}
    else:
        params["db"] = storage.bucket
        headers["Authorization"] = f"Token {storage.token}"
    url = storage.url.rstrip("/") + "/query?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=storage.timeout_s) as response:
            reply: dict[str, Any] = json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise QueryFailed(f"cannot query {storage.url}: {exc}") from exc
    for result in reply.get("results", []):
        if "error" in result:
            raise QueryFailed(f"{storage.url} refused the query: {result['error']}")
    return reply
