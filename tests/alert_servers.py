"""Real servers for the alert channel tests, on loopback: an aiohttp webhook receiver and aiosmtpd.

The fixtures (``receiver``, ``certificate``) are registered for every test in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from healthhut.devstack import free_port

RELAY_USER = "healthhut-relay"
RELAY_PASSWORD = "relay password 2025"


@dataclass
class Request:
    headers: Mapping[str, str]
    body: bytes
    peer: tuple[str, int]


@dataclass
class Receiver:
    """An aiohttp server that records each POST and answers with ``status`` and ``headers``."""

    url: str = ""
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    # When set, the handler waits for it before answering (a receiver that hangs).
    hold: asyncio.Event | None = None
    requests: list[Request] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        assert request.transport is not None
        self.requests.append(
            Request(dict(request.headers), await request.read(), request.transport.get_extra_info("peername"))
        )
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=self.status, headers=self.headers)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/alerts", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    found.url = f"http://{host}:{port}/alerts"
    yield found
    if found.hold is not None:
        found.hold.set()
    await runner.cleanup()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed server certificate for 127.0.0.1 (also the client's trust anchor): cert.pem, key.pem."""
    folder = tmp_path_factory.mktemp("smtp-tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-days",
            "2",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    return folder


@dataclass
class Delivery:
    mail_from: str | None
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    authenticated: bool | None


@dataclass
class Mailbox:
    """The aiosmtpd handler: refuses the addresses in ``refuse`` with the given reply, keeps the rest."""

    refuse: dict[str, str] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        assert isinstance(envelope.content, bytes)
        self.deliveries.append(
            Delivery(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.content,
                session.ssl is not None,
                session.authenticated,
            )
        )
        return "250 Message accepted for delivery"


def relay_login(server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any) -> AuthResult:
    accepted = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        RELAY_USER.encode(),
        RELAY_PASSWORD.encode(),
    )
    # handled=False: aiosmtpd itself answers 235 or 535.
    return AuthResult(success=accepted, handled=False)


@contextlib.asynccontextmanager
async def smtp_server(mailbox: Mailbox, certificate: Path | None) -> AsyncIterator[int]:
    """aiosmtpd on 127.0.0.1. With a certificate: STARTTLS and AUTH (after TLS) are required."""
    secure: dict[str, Any] = {}
    if certificate is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(certificate / "cert.pem", certificate / "key.pem")
        secure = {
            "tls_context": tls,
            "require_starttls": True,
            "auth_required": True,
            "auth_require_tls": True,
            "authenticator": relay_login,
        }
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, server_hostname="localhost", **secure)
    await asyncio.to_thread(controller.start)
    try:
        yield port
    finally:
        await asyncio.to_thread(controller.stop)
