"""The gateway process: one TaskGroup with the uplink and one named task per device."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from healthhut.drivers import DeviceConfig, get_driver
from healthhut.gateway.clock import ClockCheck
from healthhut.gateway.config import GatewayConfig
from healthhut.gateway.devices import DeviceSession
from healthhut.gateway.identity import SessionBook
from healthhut.gateway.identity.kiosk import KioskApi
from healthhut.gateway.identity.roster import HutRoster
from healthhut.gateway.notify import GatewayLiveness
from healthhut.gateway.outbox import Outbox, gap_item
from healthhut.gateway.spool import open_spool
from healthhut.gateway.state import GatewayState
from healthhut.gateway.status import health, keep_writing, snapshot
from healthhut.gateway.transports import BleCentral
from healthhut.gateway.uplink import Uplink
from healthhut.protocol.configfile import ConfigError
from healthhut.protocol.pseudonym import PseudonymKey
from healthhut.protocol.sdnotify import Notifier, keep_notifying
from healthhut.protocol.wire import HutHealth

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 10.0
RESTART_DELAY_S = 5.0


async def supervised(
    name: str, run: Callable[[], Awaitable[None]], on_crash: Callable[[str], Awaitable[object]]
) -> None:
    """Run a task forever: a bug in one device's code is logged and restarts that task, not the hut."""
    while True:
        try:
            await run()
            return
        except Exception:
            log.exception("task %s crashed; restarting it in %.0f s", name, RESTART_DELAY_S)
            await on_crash(name)
            await asyncio.sleep(RESTART_DELAY_S)


# What SIGHUP cannot change in a running gateway: these take effect at the next start.
RESTART_ONLY = ("hut_id", "state_dir", "mqtt", "uplink", "spool", "identity")


class Gateway:
    def __init__(self, config: GatewayConfig, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.state = GatewayState(config.state_dir)
        self.spool, self.spool_problem = open_spool(
            config.spool_path, int(config.spool.quota_mb * 1024 * 1024), gap_item
        )
        self.outbox = Outbox(self.spool)
        specs = {device.name: get_driver(device.driver) for device in config.device_configs}
        # One shared scanner for all BLE devices: BlueZ allows one discovery per client.
        self.central = BleCentral() if any(spec.transport == "ble" for spec in specs.values()) else None
        self.uplink = Uplink(config, self.state, self.spool)
        self.residents: SessionBook | None = None
        self.kiosk: KioskApi | None = None
        self.pseudonyms: PseudonymKey | None = None
        if config.identity is not None:
            roster = HutRoster(config.hut_id, config.state_dir)
            self.residents = SessionBook(
                idle_timeout=timedelta(seconds=config.identity.idle_timeout_s),
                ambiguity=timedelta(seconds=config.identity.ambiguity_s),
                roster=roster,
            )
            self.uplink.on_roster = roster.update
            self.pseudonyms = PseudonymKey.load(config.identity.key_file)
            self.kiosk = KioskApi(self.residents, self.pseudonyms, lambda: tuple(self.uplink.prompts))
        self.uplink.health = self._health
        self.sessions = [self._session(device, config) for device in config.device_configs]
        # Set while running: the task group, and each device's task by name (SIGHUP adds and removes).
        self._group: asyncio.TaskGroup | None = None
        self._device_tasks: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._reloading = asyncio.Lock()

    def _session(self, device: DeviceConfig, config: GatewayConfig) -> DeviceSession:
        return DeviceSession(
            device,
            get_driver(device.driver),
            hut_id=config.hut_id,
            state=self.state,
            outbox=self.outbox,
            clock_check=ClockCheck(timedelta(seconds=config.clock.max_device_skew_s)),
            mains_hz=config.signal.mains_hz,
            central=self.central,
            residents=self.residents,
            pseudonyms=self.pseudonyms,
        )

    def _start_device(self, session: DeviceSession) -> None:
        assert self._group is not None
        name = session.config.name
        task = self._group.create_task(
            supervised(f"device:{name}", session.run, self._crashed(session)), name=f"device:{name}"
        )
        self._device_tasks[name] = task
        self._tasks.append(task)

    async def _stop_device(self, session: DeviceSession) -> None:
        task = self._device_tasks.pop(session.config.name)
        self._tasks.remove(task)  # before it ends: a stopped device is no sign of a stuck gateway
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def reload(self) -> None:
        """SIGHUP: read the config file again and apply its devices, [signal] and [clock] without a
        restart. A device whose entry did not change keeps running untouched, so its readings flow on;
        a changed one is reopened; a removed one stops; a new one starts. A config with an error is
        refused, naming the file, line and key, and the running one is kept. Changes to the settings in
        RESTART_ONLY are reported and wait for the next start."""
        if self.config_path is None:
            log.warning("reload asked, but the gateway was not started from a config file")
            return
        async with self._reloading:  # one reload at a time, however fast the signals come
            try:
                await self._reload(self.config_path)
            except Exception:  # a task boundary: a failed reload must not take the hut down
                log.exception("reload failed; the devices that were running keep running")

    async def _reload(self, path: Path) -> None:
        from healthhut.gateway.config import load_config

        try:
            new = await asyncio.to_thread(load_config, path)
        except ConfigError as exc:
            log.error("reload refused, the running config is kept: %s", exc)
            return
        later = [key for key in RESTART_ONLY if getattr(new, key) != getattr(self.config, key)]
        if later:
            log.warning("reload: %s change only at a restart (systemctl restart hut-gateway)", ", ".join(later))
        everything = new.signal != self.config.signal or new.clock != self.config.clock
        wanted = {device.name: device for device in new.device_configs}
        kept: list[DeviceSession] = []
        stopped = started = 0
        for session in list(self.sessions):
            if not everything and wanted.get(session.config.name) == session.config:
                kept.append(session)
                continue
            await self._stop_device(session)
            self.sessions.remove(session)
            stopped += 1
        running = {session.config.name for session in kept}
        for name, device in wanted.items():
            if name in running:
                continue
            if get_driver(device.driver).transport == "ble" and self.central is None:
                log.warning("reload: device %s is the first BLE device; it starts at the next restart", name)
                continue
            session = self._session(device, new)
            self.sessions.append(session)
            self._start_device(session)
            started += 1
        self.config = self.config.model_copy(
            update={
                "devices": new.devices,
                "device_configs": new.device_configs,
                "signal": new.signal,
                "clock": new.clock,
            }
        )
        log.info("config reloaded: %d device(s) kept, %d stopped, %d started", len(kept), stopped, started)

    async def _health(self) -> HutHealth:
        status = await snapshot(self.config.hut_id, self.state.boot_id, self.sessions, self.spool, self.uplink.stats)
        return health(status)

    def _crashed(self, session: DeviceSession) -> Callable[[str], Awaitable[object]]:
        return lambda name: self.outbox.event("device_error", session.device, crashed=True)

    async def run(self) -> None:
        """Run until SIGTERM/SIGINT, then stop the devices and drain the uplink."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # A SIGHUP before the devices run is kept for then: its default action would end the process.
        early_reload = asyncio.Event()
        loop.add_signal_handler(signal.SIGHUP, early_reload.set)
        log.info(
            "hut %s starting (boot %s) with %d device(s)", self.config.hut_id, self.state.boot_id, len(self.sessions)
        )
        await self.outbox.event("started", devices=len(self.sessions))
        if self.spool_problem is not None:
            await self.outbox.event("spool_reset", problem=self.spool_problem)
        if self.kiosk is not None and self.config.identity is not None:
            await self.kiosk.serve(self.config.identity.kiosk_host, self.config.identity.kiosk_port)
        notifier = Notifier.from_environment()
        async with asyncio.TaskGroup() as group:
            uplink_task = group.create_task(self.uplink.run(), name="uplink")
            central_task = group.create_task(self.central.run(), name="ble-central") if self.central else None
            self._group = group
            self._tasks[:] = [uplink_task, *([central_task] if central_task else [])]
            for session in self.sessions:
                self._start_device(session)
            loop.add_signal_handler(signal.SIGHUP, lambda: group.create_task(self.reload(), name="reload"))
            if early_reload.is_set():
                group.create_task(self.reload(), name="reload")
            liveness = GatewayLiveness(
                tasks=self._tasks,
                uplink=self.uplink.stats,
                spool=self.spool,
                devices=self.sessions,
                # Longer than the uplink's slowest retry (a resend or a refused publish's backoff).
                stall_after=2 * max(self.config.uplink.store_ack_timeout_s, self.config.uplink.reconnect_max_s),
            )
            status_task = group.create_task(
                keep_writing(
                    self.config.state_dir,
                    self.config.hut_id,
                    self.state.boot_id,
                    self.sessions,
                    self.spool,
                    self.uplink.stats,
                ),
                name="status-file",
            )
            notify_task = group.create_task(
                keep_notifying(notifier, problem=liveness.problem, status=liveness.status), name="systemd-notify"
            )
            await stop.wait()
            notify_task.cancel()
            status_task.cancel()
            notifier.stopping(f"stopping: sending the {self.spool.depth} item(s) still spooled")
            log.info("stopping: %d item(s) still to send", self.spool.depth)
            loop.remove_signal_handler(signal.SIGHUP)
            for task in self._device_tasks.values():
                task.cancel()
            if central_task is not None:
                central_task.cancel()
            await self.outbox.event("stopping")
            self.uplink.stop()
            try:
                await asyncio.wait_for(asyncio.shield(uplink_task), DRAIN_TIMEOUT_S)
            except TimeoutError:
                log.warning("broker unreachable while stopping; %d item(s) stay spooled", self.spool.depth)
                uplink_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await uplink_task
        if self.kiosk is not None:
            await self.kiosk.close()
        await self.spool.close()
        notifier.close()
        log.info("stopped")
