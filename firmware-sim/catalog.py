"""What hut-sim can play: every driver in the registry, with the links and faults its simulator offers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from healthhut.drivers import available_drivers, get_driver
from healthhut.firmware_sim.faults import FAULTS, Fault
from healthhut.firmware_sim.gatt_devices import GATT_DEVICES
from healthhut.firmware_sim.players import PLAYERS


@dataclass(frozen=True, slots=True)
class Playable:
    """One registered driver: how hut-sim can play it (no links: it has no simulator yet)."""

    driver: str
    description: str
    transport: str
    links: tuple[str, ...]
    faults: frozenset[Fault]
    # Other protocol generations, each with its description, chosen by the driver's setting of that name
    # (and hut-sim's option: --protocol, or --board for the HealthyPi).
    protocols: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    setting: str = "protocol"

    def faults_on(self, link: str) -> frozenset[Fault]:
        return frozenset(f for f in self.faults if link in FAULTS[f].links)


def playable(driver: str) -> Playable:
    """How hut-sim plays ``driver``; DriverNotFoundError (a LookupError) if no such driver is installed."""
    spec = get_driver(driver)
    player = PLAYERS.get(driver)
    if player is not None:
        protocols = {name: sibling.description for name, sibling in player.protocols.items()}
        faults = player.faults.union(*(p.faults for p in player.protocols.values()))
        return Playable(
            driver,
            spec.description,
            spec.transport,
            ("pty", "serial", "mqtt"),
            faults,
            MappingProxyType(protocols),
            player.setting,
        )
    gatt = GATT_DEVICES.get(driver)
    if gatt is not None:
        return Playable(driver, spec.description, spec.transport, ("ble", "mqtt"), gatt.supported_faults)
    return Playable(driver, spec.description, spec.transport, (), frozenset())


def catalog() -> list[Playable]:
    """Every installed driver, in name order."""
    return [playable(name) for name in available_drivers()]
