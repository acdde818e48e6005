"""sd_notify through a real datagram socket: the client, the gateway's watchdog decisions, the silence of a
blocked event loop, and both programs run as processes under a NOTIFY_SOCKET, as systemd would start them
(the gateway also with a broker that stops answering)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from healthhut.devstack import LocalStack
from healthhut.devstack.programs import Programs
from healthhut.devstack.servers import Mosquitto
from healthhut.gateway.notify import GatewayLiveness
from healthhut.gateway.outbox import gap_item
from healthhut.gateway.spool import MemorySpool, Priority, SpoolItem
from healthhut.gateway.uplink import UplinkStats
from healthhut.protocol.sdnotify import Notifier, keep_notifying, watchdog_interval


class Listener:
    """What systemd does: a bound AF_UNIX datagram socket that collects notifications."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(address)
        self.socket.setblocking(False)

    async def receive(self, within: float = 5.0) -> str:
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.socket, 4096), within)
        return data.decode()

    async def receive_until(self, pattern: str, within: float = 30.0) -> list[str]:
        """Every datagram up to and including the first that matches ``pattern`` (a regex)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        seen: list[str] = []
        while not seen or not re.fullmatch(pattern, seen[-1], re.DOTALL):
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"no datagram matched {pattern!r} within {within} s; got {seen!r}")
            try:
                seen.append(await self.receive(left))
            except TimeoutError:
                continue
        return seen

    def drain(self) -> list[str]:
        seen = []
        while True:
            try:
                seen.append(self.socket.recv(4096).decode())
            except BlockingIOError:
                return seen


@pytest.fixture
def listener() -> Iterator[Listener]:
    # A short directory: an AF_UNIX path is at most 107 bytes, and pytest's tmp_path can be longer.
    directory = tempfile.mkdtemp(prefix="hh-notify-")
    receiver = Listener(os.path.join(directory, "notify"))
    yield receiver
    receiver.socket.close()
    shutil.rmtree(directory)


async def test_each_notification_is_one_datagram(listener: Listener) -> None:
    notifier = Notifier(listener.address)
    assert notifier.ready("3 device(s)")
    assert notifier.status("two\nlines")
    assert notifier.watchdog()
    assert notifier.stopping("stopping")
    assert [await listener.receive() for _ in range(4)] == [
        "READY=1\nSTATUS=3 device(s)",
        "STATUS=two lines",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping",
    ]
    notifier.close()


async def test_abstract_socket_name() -> None:
    name = f"hh-notify-{uuid.uuid4().hex}"
    receiver = Listener("\0" + name)
    try:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert await receiver.receive() == "READY=1"
        notifier.close()
    finally:
        receiver.socket.close()


def test_without_a_usable_socket_nothing_is_sent(caplog: pytest.LogCaptureFixture) -> None:
    assert not Notifier.from_environment({}).enabled
    assert not Notifier.from_environment({"NOTIFY_SOCKET": ""}).send("READY=1")
    missing = Notifier(f"{tempfile.gettempdir()}/hh-notify-missing-{uuid.uuid4().hex}")
    with caplog.at_level(logging.WARNING, logger="healthhut.protocol.sdnotify"):
        assert not Notifier.from_environment({"NOTIFY_SOCKET": "relative/name"}).enabled
        assert not missing.send("WATCHDOG=1")
        assert not missing.send("WATCHDOG=1")
    missing.close()
    # Each said once, not at every ping.
    assert [r.getMessage() for r in caplog.records] == [
        "NOTIFY_SOCKET 'relative/name' is neither a path nor an abstract name; not notifying systemd",
        f"cannot notify systemd at {missing.address}: [Errno 2] No such file or directory",
    ]


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    # Meant for another process (the variable leaked into a child): not ours to ping.
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=4242) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


@dataclass
class Device:
    connected: bool


async def test_gateway_pings_only_while_live(listener: Listener, caplog: pytest.LogCaptureFixture) -> None:
    stats = UplinkStats(connected=True)
    spool = MemorySpool(1 << 20, gap_item)
    await spool.put([SpoolItem("obs", Priority.VITAL, "obs-1", b"{}")])
    device = asyncio.create_task(asyncio.Event().wait(), name="device:ox-1")
    now = [0.0]
    liveness = GatewayLiveness(
        tasks=[device],
        uplink=stats,
        spool=spool,
        devices=[Device(connected=True), Device(connected=False)],
        stall_after=60,
        clock=lambda: now[0],
    )
    notifier = Notifier(listener.address)
    watchdog = asyncio.create_task(
        keep_notifying(notifier, problem=liveness.problem, status=liveness.status, environ={"WATCHDOG_USEC": "100000"})
    )
    live = "WATCHDOG=1\nSTATUS=2 device(s), 1 connected, spool 1 item(s), broker connected"

    async def next_after(change: object) -> list[str]:
        # The watchdog runs only when this test awaits: what is queued predates the change.
        listener.drain()
        return [await listener.receive(), await listener.receive()]

    try:
        assert await listener.receive() == "READY=1\n" + live
        assert await listener.receive() == live

        # Connected, an item spooled, and for 60 s nothing published, confirmed, resent or refused.
        now[0] = 61.0
        stalled = "STATUS=uplink stalled: nothing sent or confirmed for 61 s with 1 item(s) spooled"
        assert await next_after(now) == [stalled, stalled]

        # A confirmation is progress: the pings resume.
        stats.stored_messages += 1
        assert await next_after(stats) == [live, live]

        # A resend is progress too (the collector is slow, not the gateway stuck).
        now[0] = 200.0
        assert (await next_after(now))[0].startswith("STATUS=uplink stalled")
        stats.resent += 1
        assert await next_after(stats) == [live, live]

        # Broker unreachable for long: waiting on the network is not a stuck gateway, and a restart
        # would not bring the network back.
        stats.connected = False
        now[0] = 1000.0
        waiting = "WATCHDOG=1\nSTATUS=2 device(s), 1 connected, spool 1 item(s), broker unreachable, retrying"
        assert await next_after(now) == [waiting, waiting]

        # Nothing spooled: nothing to make progress with.
        stats.connected = True
        (lease,) = [await spool.lease("obs", 10, 1 << 20)]
        await spool.ack(lease)
        now[0] = 5000.0
        idle = "WATCHDOG=1\nSTATUS=2 device(s), 1 connected, spool 0 item(s), broker connected"
        assert await next_after(now) == [idle, idle]

        # A device's supervisor task ended: no more pings.
        device.cancel()
        assert await next_after(device) == ["STATUS=task device:ox-1 has stopped"] * 2
    finally:
        watchdog.cancel()
        notifier.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        "uplink stalled: nothing sent or confirmed for 61 s with 1 item(s) spooled; not pinging the systemd watchdog",
        "uplink stalled: nothing sent or confirmed for 139 s with 1 item(s) spooled; not pinging the systemd watchdog",
        "task device:ox-1 has stopped; not pinging the systemd watchdog",
    ]


async def test_ready_waits_for_the_event(listener: Listener) -> None:
    subscribed = asyncio.Event()
    notifier = Notifier(listener.address)
    task = asyncio.create_task(
        keep_notifying(
            notifier,
            problem=lambda: None,
            status=lambda: "subscribed" if subscribed.is_set() else "waiting for the broker",
            ready=subscribed,
            environ={"WATCHDOG_USEC": "10000000"},
        )
    )
    try:
        # Alive while it waits (pinged), ready only once subscribed, and told at once, not at the next ping.
        assert await listener.receive() == "WATCHDOG=1\nSTATUS=waiting for the broker"
        subscribed.set()
        assert await listener.receive(within=1.0) == "READY=1\nWATCHDOG=1\nSTATUS=subscribed"
    finally:
        task.cancel()
        notifier.close()


class Timed:
    """Receives on ``listener`` in a thread of its own, noting when each datagram arrived, so that it
    keeps time while the event loop under test is blocked."""

    def __init__(self, listener: Listener) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self._socket = listener.socket
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-listener", daemon=True)

    def _run(self) -> None:
        self._socket.setblocking(True)
        self._socket.settimeout(0.05)
        while not self._stop.is_set():
            try:
                data = self._socket.recv(4096)
            except TimeoutError:
                continue
            self.arrivals.append((time.monotonic(), data.decode()))

    def __enter__(self) -> Timed:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def pings(self, after: float = -math.inf, before: float = math.inf) -> list[float]:
        return [at for at, text in self.arrivals if text.startswith("WATCHDOG=1") and after < at < before]


async def test_a_blocked_event_loop_sends_no_pings(listener: Listener) -> None:
    """The pings come from the event loop itself: a callback that blocks it (a synchronous call that
    hangs) silences them for longer than WatchdogSec, which is what makes systemd restart the service,
    and they resume once the loop runs again."""
    watchdog_s = 0.2  # WatchdogSec=200ms: a ping every 0.1 s
    notifier = Notifier(listener.address)
    blocked: list[float] = []

    def hang() -> None:  # what a blocking call in a callback or a coroutine does to the loop
        blocked.append(time.monotonic())
        time.sleep(5 * watchdog_s)
        blocked.append(time.monotonic())

    with Timed(listener) as timed:
        task = asyncio.create_task(
            keep_notifying(
                notifier,
                problem=lambda: None,
                status=lambda: "live",
                environ={"WATCHDOG_USEC": str(int(watchdog_s * 1_000_000))},
            )
        )
        try:
            await asyncio.sleep(3 * watchdog_s)
            asyncio.get_running_loop().call_soon(hang)
            await asyncio.sleep(0)  # hang() runs here, and returns the loop 1 s later
            await asyncio.sleep(3 * watchdog_s)
        finally:
            task.cancel()
            notifier.close()
    start, end = blocked
    # Pinged before; nothing while blocked (a datagram sent just before has 50 ms to be received) ...
    assert len(timed.pings(before=start)) >= 2
    assert timed.pings(after=start + 0.05, before=end) == []
    # ... so systemd sees a silence longer than WatchdogSec ...
    pings = timed.pings()
    assert max(b - a for a, b in itertools.pairwise(pings)) >= 4 * watchdog_s
    # ... and pings at once, and on, when the loop runs again.
    resumed = timed.pings(after=end)
    assert len(resumed) >= 2
    assert resumed[0] - end < watchdog_s


async def test_a_gateway_whose_uplink_stalls_stops_pinging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The liveness rule end to end: a real hut-gateway connected to a real broker that stops answering
    (SIGSTOP: the connection stays up, PUBACKs stop) with readings spooled misses its pings, and says why in
    STATUS=; once the broker answers again (SIGCONT), the pings resume."""
    directory = tempfile.mkdtemp(prefix="hh-notify-")
    listener = Listener(os.path.join(directory, "gateway"))
    config = tmp_path / "gateway.toml"
    try:
        with Mosquitto(tmp_path / "broker") as broker, Programs(tmp_path / "logs") as programs:
            # No collector: the started event stays spooled and is resent every 0.5 s, which is progress.
            # stall_after is 2 * max(store_ack_timeout_s, reconnect_max_s) = 1 s; keepalive outlasts the test,
            # and the client's 5 s PUBACK timeout (gateway/uplink.py) is after the SIGCONT below.
            config.write_text(
                f'hut_id = "hut-stall"\nstate_dir = "{tmp_path / "state"}"\n'
                f"[mqtt]\nport = {broker.port}\nkeepalive = 120\n"
                "[uplink]\nstore_ack_timeout_s = 0.5\nreconnect_max_s = 0.5\n"
            )
            monkeypatch.setenv("NOTIFY_SOCKET", listener.address)
            monkeypatch.setenv("WATCHDOG_USEC", "400000")
            programs.start("gateway", "hut-gateway", "run", "--config", str(config))
            assert broker.pid is not None
            await listener.receive_until(r"READY=1\n.*")
            live = r"WATCHDOG=1\nSTATUS=0 device\(s\), 0 connected, spool [1-9]\d* item\(s\), broker connected"
            await listener.receive_until(live)
            # Still pinging across resends: nothing confirmed, but the uplink is working on the spool.
            await asyncio.sleep(1.5)
            assert re.fullmatch(live, listener.drain()[-1])

            os.kill(broker.pid, signal.SIGSTOP)
            try:
                seen = await listener.receive_until(
                    r"STATUS=uplink stalled: nothing sent or confirmed for \d+ s .*", 10
                )
                await asyncio.sleep(0.6)
                stalled = listener.drain()
                assert stalled and all(d.startswith("STATUS=uplink stalled") for d in stalled), seen + stalled
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            seen = await listener.receive_until(live, 10)
            assert not any(d.startswith("WATCHDOG=1") for d in seen[:-1]), seen
            assert programs.stop("gateway") == 0
            assert "uplink stalled" in programs.log("gateway", tail=100_000)
    finally:
        listener.socket.close()
        shutil.rmtree(directory)


def write_configs(tmp: Path, stack: LocalStack, unique: str) -> tuple[Path, Path]:
    collector = tmp / "collector.toml"
    collector.write_text(
        f'[mqtt]\nport = {stack.mosquitto.port}\nclient_id = "c-{unique}"\nshare_group = "g{unique}"\n'
        "session_expiry_s = 30\n"
        f'[storage]\ntype = "influxdb1"\nurl = "{stack.influxd.url}"\ndatabase = "notify_{unique}"\n'
        f'[dead_letters]\npath = "{tmp / "dead.sqlite"}"\n'
    )
    gateway = tmp / "gateway.toml"
    gateway.write_text(
        f'hut_id = "hut-{unique}"\nstate_dir = "{tmp / "state"}"\n[mqtt]\nport = {stack.mosquitto.port}\n'
        f"[uplink]\nbatch_interval_s = 0.2\n"
        # A device that is not there: the gateway runs, and says so.
        f'[[devices]]\ndriver = "contec-cms50"\nname = "ox-1"\npath = "{tmp / "no-such-tty"}"\n'
    )
    return collector, gateway


async def test_programs_notify_under_systemd(
    stack: LocalStack, tmp_path: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector_config, gateway_config = write_configs(tmp_path, stack, unique)
    directory = tempfile.mkdtemp(prefix="hh-notify-")
    to_collector = Listener(os.path.join(directory, "collector"))
    to_gateway = Listener(os.path.join(directory, "gateway"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    try:
        with Programs(tmp_path / "logs") as programs:
            monkeypatch.setenv("NOTIFY_SOCKET", to_collector.address)
            programs.start("collector", "hut-collector", "run", "--config", str(collector_config))
            seen = await to_collector.receive_until(r"READY=1\n.*")
            assert seen[-1] == "READY=1\nWATCHDOG=1\nSTATUS=subscribed, 0 message(s) stored, 0 dead letter(s)"

            monkeypatch.setenv("NOTIFY_SOCKET", to_gateway.address)
            programs.start("gateway", "hut-gateway", "run", "--config", str(gateway_config))
            seen = await to_gateway.receive_until(r"READY=1\n.*")
            assert re.fullmatch(
                r"READY=1\nWATCHDOG=1\nSTATUS=1 device\(s\), 0 connected, spool \d+ item\(s\), .*", seen[-1]
            )
            # The collector confirms what the gateway sent: its spool empties, and it keeps pinging.
            await to_gateway.receive_until(
                r"WATCHDOG=1\nSTATUS=1 device\(s\), 0 connected, spool 0 item\(s\), broker connected"
            )
            await to_collector.receive_until(r"WATCHDOG=1\nSTATUS=subscribed, [1-9]\d* message\(s\) stored, 0 dead.*")

            assert programs.stop("gateway") == 0
            seen = await to_gateway.receive_until(r"STOPPING=1\n.*")
            assert seen[-1] == "STOPPING=1\nSTATUS=stopping: sending the 0 item(s) still spooled"
            assert programs.stop("collector") == 0
            assert (await to_collector.receive_until(r"STOPPING=1.*"))[-1] == "STOPPING=1"
    finally:
        to_collector.socket.close()
        to_gateway.socket.close()
        shutil.rmtree(directory)
