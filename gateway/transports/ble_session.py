"""One configured BLE device for the gateway: its driver's BleProfile and its config entry made into a link.

The gateway runs one :class:`BleCentral` (the shared scanner) and one :func:`run_ble_device` per BLE device,
all as named tasks of its TaskGroup::

    central = BleCentral(adapter=None)  # or "hci1"
    group.create_task(central.run(), name="ble-central")
    group.create_task(
        run_ble_device(spec, entry, central, on_value=decoder_feed, on_event=report),
        name=f"device:{entry.name}",
    )

``on_value(characteristic, data)`` gets every read, notified and indicated value as the 16-bit UUID and the
raw bytes, for ``spec.decoder(entry).on_value``. ``on_event`` gets :class:`BleConnected`,
:class:`BleDisconnected` and :class:`BleConnectFailed`. The entry is read for ``name``, ``address`` (None:
the first device advertising the profile's service), ``timezone`` (an IANA name or a tzinfo for the clock
write; None: the gateway's local zone) and ``pair`` (pair on the first connect). Where the profile uses
RACP, ``racp_command`` gives the request for each new connection (``racp_report_after(last_sequence)``, or
None to skip); by default every connection asks for all records, whose readings the deterministic
observation ids deduplicate.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import NoReturn
from zoneinfo import ZoneInfo

from healthhut.drivers import DeviceConfig, DriverSpec
from healthhut.gateway.transports.ble import (
    RACP_REPORT_ALL,
    BleCentral,
    BleDeviceLink,
    BleEvent,
    BleTarget,
    BleValue,
)
from healthhut.gateway.transports.ble_policy import DEFAULT_POLICY, BlePolicy


def device_timezone(value: object) -> tzinfo:
    """The zone for a device's clock: a tzinfo as given, an IANA name looked up, or the local zone."""
    if isinstance(value, tzinfo):
        return value
    if isinstance(value, str):
        return ZoneInfo(value)
    if value is None:
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    raise TypeError(f"a timezone is an IANA name or a tzinfo, not {value!r}")


def link_for(
    spec: DriverSpec,
    config: DeviceConfig,
    central: BleCentral,
    *,
    racp_command: Callable[[], bytes | None] | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    policy: BlePolicy = DEFAULT_POLICY,
) -> BleDeviceLink:
    """The link for one BLE device entry; ValueError if the driver is not a BLE driver."""
    profile = spec.ble
    if spec.transport != "ble" or profile is None:
        raise ValueError(f"driver {spec.name} does not use BLE")
    address = getattr(config, "address", None)
    if address is not None and not isinstance(address, str):
        raise TypeError(f"device {config.name}: address must be a string")
    if racp_command is None and profile.racp:
        racp_command = lambda: RACP_REPORT_ALL  # noqa: E731
    return BleDeviceLink(
        central,
        BleTarget(service=profile.service, address=address),
        profile,
        name=config.name,
        timezone=device_timezone(getattr(config, "timezone", None)),
        pair=bool(getattr(config, "pair", False)),
        racp_command=racp_command,
        clock=clock,
        policy=policy,
    )


async def run_ble_device(
    spec: DriverSpec,
    config: DeviceConfig,
    central: BleCentral,
    on_value: Callable[[int, bytes], None],
    *,
    on_event: Callable[[BleEvent], None] | None = None,
    racp_command: Callable[[], bytes | None] | None = None,
    policy: BlePolicy = DEFAULT_POLICY,
) -> NoReturn:
    """Keep one BLE device connected for as long as the task runs; see the module docstring."""
    link = link_for(spec, config, central, racp_command=racp_command, policy=policy)

    def dispatch(event: BleEvent) -> None:
        if isinstance(event, BleValue):
            on_value(event.characteristic, event.data)
        elif on_event is not None:
            on_event(event)

    await link.run(dispatch)
