"""Identity source: an RDM630/RDM6300-family 125 kHz (EM4100) card reader on a serial line.

Not a measuring device: each card read starts that resident's session (gateway/identity), and the card's
code is turned into a pseudonym at once and dropped. See README.md for the reader's frames.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, StringConstraints

from healthhut.drivers.base import DeviceConfig, DriverSpec, SerialLink, SerialSettings
from healthhut.drivers.card_reader.codec import HOLDOFF_S, CardDecoder, CodeFormat, encode_frame

DeviceName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
# 9600 8N1, the only setting the datasheets give (README.md, Protocol).
BAUDRATE = 9600


class CardReaderConfig(DeviceConfig):
    model_config = ConfigDict(extra="forbid", frozen=True)

    driver: Literal["card-reader"]
    name: DeviceName
    path: str = Field(min_length=1, description="the reader's serial line, e.g. /dev/serial0 or a USB-TTL adapter")
    code: CodeFormat = Field(
        default="hex",
        description='"hex": the 10 data digits (version byte and card number); "decimal": the card number '
        "as printed on the card, 10 digits",
    )
    holdoff_s: float = Field(
        default=HOLDOFF_S, ge=0.2, le=10, description="the same card within this many seconds is one read"
    )
    baudrate: int = Field(default=BAUDRATE, description="9600 for every RDM630/RDM6300 documented")


def _decoder_for(config: CardReaderConfig) -> CardDecoder:
    return CardDecoder(config.code, config.holdoff_s)


def _link_for(config: CardReaderConfig) -> SerialLink:
    return SerialLink(SerialSettings(config.baudrate))


DRIVER = DriverSpec(
    name="card-reader",
    description="125 kHz RFID card reader, RDM630/RDM6300 family (identity source, serial 9600 8N1)",
    transport="serial",
    config_model=CardReaderConfig,
    new_decoder=CardDecoder,
    serial=SerialLink(SerialSettings(BAUDRATE)),
    decoder_for=_decoder_for,
    serial_link_for=_link_for,
    role="identity",
)

__all__ = ["DRIVER", "CardDecoder", "CardReaderConfig", "encode_frame"]
