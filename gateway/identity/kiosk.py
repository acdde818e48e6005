"""The kiosk's local API: the hut's own touch-screen app starts and ends resident sessions.

HTTP on loopback only (the address is checked at start): nothing off the Pi can reach it.

- ``POST /v1/session`` with JSON ``{"resident_id": "...", "birth_date": "2019-05-01" | "age_band": "70-79y",
  "sex": "female", "clinical": ["diabetes"]}`` starts a session (ending any other) and answers 201 with
  the session id, the age band and whether the resident is on the hut's roster. The identifier is
  turned into its pseudonym at once and dropped. What the kiosk leaves out of the profile is taken from
  the roster (clinical flags from both); the kiosk may start a session for a resident not on it.
- ``DELETE /v1/session`` ends the active session (404 if there is none).
- ``GET /v1/session`` says whether a session is active, since when, from which source (the kiosk or a
  card scanner) and with which age band, and the last problem with a scan, if any: ``{"at", "code",
  "error"}`` with code ``bad_scan`` (unreadable; scan again) or ``unknown_card`` (not on the roster; ask
  the staff), and an English text; the kiosk app shows the code in its own words. Either ends the
  session that was active: someone else is at the kiosk now.

Bad input gets 400 with ``{"error": ..., "field": ...}``; error texts never quote what was sent, since
that may be the identifier.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from healthhut.gateway.identity.sessions import Profile, SessionBook
from healthhut.protocol.pseudonym import PseudonymKey
from healthhut.protocol.roster import BirthDate
from healthhut.protocol.wire import ClinicalFlag

log = logging.getLogger(__name__)


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    resident_id: str = Field(min_length=1, max_length=64)
    birth_date: BirthDate | None = None
    age_band: str | None = Field(default=None, pattern=r"^(\d{1,2}m|\d{1,2}y|\d{2}-\d{2}y|80\+y)$")
    sex: Literal["female", "male", "unknown"] = "unknown"
    clinical: list[ClinicalFlag] = Field(default_factory=list, max_length=4)


# How long a "please measure again" stays on the kiosk's list.
PROMPT_S = 300


def _completed(given: Profile, registered: Profile) -> Profile:
    """The kiosk's profile with what it left out taken from the roster; clinical flags from both."""
    has_age = given.birth_date is not None or given.age_band is not None
    return Profile(
        given.birth_date if has_age else registered.birth_date,
        given.age_band if has_age else registered.age_band,
        given.sex if given.sex != "unknown" else registered.sex,
        given.clinical | registered.clinical,
    )


def _error(status: int, message: str, field: str | None = None) -> web.Response:
    return web.json_response({"error": message, "field": field}, status=status)


class KioskApi:
    def __init__(
        self,
        sessions: SessionBook,
        key: PseudonymKey,
        prompts: Callable[[], Iterable[tuple[datetime, dict[str, Any]]]] = tuple,
    ) -> None:
        self.sessions = sessions
        self.key = key
        self.prompts = prompts
        self.app = web.Application(client_max_size=16 * 1024)
        self.app.router.add_post("/v1/session", self.start)
        self.app.router.add_delete("/v1/session", self.end)
        self.app.router.add_get("/v1/session", self.show)
        self.app.router.add_get("/v1/prompts", self.show_prompts)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, request: web.Request) -> web.Response:
        try:
            body: Any = json.loads(await request.read())
        except ValueError:
            return _error(400, "the body is not JSON")
        try:
            asked = SessionRequest.model_validate(body)
        except ValidationError as exc:
            first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            return _error(400, f"{where}: {first['msg']}", where or None)
        try:
            pseudonym = self.key.pseudonym(asked.resident_id)
        except ValueError as exc:
            return _error(400, str(exc), "resident_id")
        if asked.birth_date is not None and asked.age_band is not None:
            return _error(400, "give either birth_date or age_band, not both", "age_band")
        profile = Profile(asked.birth_date, asked.age_band, asked.sex, frozenset(asked.clinical))
        registered = self.sessions.roster.profile(pseudonym) if self.sessions.roster is not None else None
        if registered is not None:
            profile = _completed(profile, registered)
        try:
            session = self.sessions.start(pseudonym, profile, "kiosk")
        except ValueError as exc:
            return _error(400, str(exc), "birth_date")
        now = datetime.now(UTC)
        reply = {"session": session.id, "age_band": profile.band_at(now), "on_roster": registered is not None}
        return web.json_response(reply, status=201)

    async def end(self, request: web.Request) -> web.Response:
        ended = self.sessions.end(reason="kiosk")
        if ended is None:
            return _error(404, "no session is active")
        return web.json_response({"ended": ended.id})

    async def show(self, request: web.Request) -> web.Response:
        active = self.sessions.active
        reply: dict[str, Any] = {"active": active is not None}
        if active is not None:
            reply |= {
                "session": active.id,
                "source": active.source,
                "since": active.started_at.isoformat(),
                "age_band": active.profile.band_at(datetime.now(UTC)),
            }
        if self.sessions.last_error is not None:
            when, code, what = self.sessions.last_error
            reply["last_error"] = {"at": when.isoformat(), "code": code, "error": what}
        return web.json_response(reply)

    async def show_prompts(self, request: web.Request) -> web.Response:
        """The collector's "please measure again" requests of the last ``PROMPT_S`` seconds, newest first,
        for the kiosk screen (zh-CN and en); none carries a value or an identifier."""
        since = datetime.now(UTC) - timedelta(seconds=PROMPT_S)
        recent = [
            {
                "at": at.isoformat(),
                "kind": command.get("kind"),
                "reason": command.get("reason"),
                "device": command.get("device"),
                "message": command.get("message"),
                "message_en": command.get("message_en"),
            }
            for at, command in self.prompts()
            if at >= since
        ]
        return web.json_response({"prompts": recent[::-1]})

    async def serve(self, host: str, port: int) -> None:
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the kiosk API listens on loopback only, not {host}")
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])  # the port bound, when 0 asked for a free one
        log.info("kiosk API on http://%s:%d/v1/session", host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
