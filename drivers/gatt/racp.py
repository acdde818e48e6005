"""Record Access Control Point (0x2A52) as the Glucose Service uses it: the bytes of the gateway's commands
and the decoding of the meter's responses."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from healthhut.drivers.base import DecodeError
from healthhut.drivers.gatt.wire import Cursor

RECORD_ACCESS_CONTROL_POINT = 0x2A52


class OpCode(IntEnum):
    REPORT_STORED_RECORDS = 0x01
    DELETE_STORED_RECORDS = 0x02
    ABORT_OPERATION = 0x03
    REPORT_NUMBER_OF_STORED_RECORDS = 0x04
    NUMBER_OF_STORED_RECORDS_RESPONSE = 0x05
    RESPONSE_CODE = 0x06


class Operator(IntEnum):
    NULL = 0x00
    ALL_RECORDS = 0x01
    LESS_THAN_OR_EQUAL_TO = 0x02
    GREATER_THAN_OR_EQUAL_TO = 0x03
    WITHIN_RANGE_OF = 0x04  # inclusive
    FIRST_RECORD = 0x05
    LAST_RECORD = 0x06


class FilterType(IntEnum):
    """Glucose Service filter types."""

    SEQUENCE_NUMBER = 0x01
    USER_FACING_TIME = 0x02


class ResponseCode(IntEnum):
    SUCCESS = 0x01
    OP_CODE_NOT_SUPPORTED = 0x02
    INVALID_OPERATOR = 0x03
    OPERATOR_NOT_SUPPORTED = 0x04
    INVALID_OPERAND = 0x05
    NO_RECORDS_FOUND = 0x06
    ABORT_UNSUCCESSFUL = 0x07
    PROCEDURE_NOT_COMPLETED = 0x08
    OPERAND_NOT_SUPPORTED = 0x09


RESPONSE_OP_CODES = (OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE, OpCode.RESPONSE_CODE)
# Sizes of one filter value per filter type: a sequence number, or a user facing time (a Date Time).
FILTER_VALUE_SIZES = {FilterType.SEQUENCE_NUMBER: 2, FilterType.USER_FACING_TIME: 7}
MAX_SEQUENCE_NUMBER = 0xFFFF
NAME = f"Record Access Control Point ({RECORD_ACCESS_CONTROL_POINT:#06x})"


@dataclass(frozen=True, slots=True)
class RacpValue:
    """One RACP value as sent: op code, operator and the operand bytes."""

    op_code: int
    operator: int
    operand: bytes = b""

    @property
    def record_count(self) -> int | None:
        """The count of a Number of Stored Records Response, else None."""
        if self.op_code != OpCode.NUMBER_OF_STORED_RECORDS_RESPONSE:
            return None
        return int.from_bytes(self.operand, "little")

    @property
    def request_op_code(self) -> int | None:
        """The op code a Response Code answers, else None."""
        return self.operand[0] if self.op_code == OpCode.RESPONSE_CODE else None

    @property
    def response_code(self) -> int | None:
        """The Response Code Value, else None."""
        return self.operand[1] if self.op_code == OpCode.RESPONSE_CODE else None

    @property
    def sequence_filter(self) -> tuple[int, ...] | None:
        """The sequence numbers a command filters on (one, or two for a range), else None."""
        if self.operator not in _FILTERING or not self.operand or self.operand[0] != FilterType.SEQUENCE_NUMBER:
            return None
        body = self.operand[1:]
        return tuple(int.from_bytes(body[i : i + 2], "little") for i in range(0, len(body) - 1, 2))


_FILTERING = (Operator.LESS_THAN_OR_EQUAL_TO, Operator.GREATER_THAN_OR_EQUAL_TO, Operator.WITHIN_RANGE_OF)


def decode_racp(data: bytes, strict: bool = False) -> RacpValue:
    """Any RACP value, command or response. DecodeError names an unknown op code or operator, or an operand
    of the wrong size for its op code."""
    cursor = Cursor(data, NAME)
    op_code = cursor.uint(1, "Op Code")
    operator = cursor.uint(1, "Operator")
    operand = cursor.rest()
    if op_code not in OpCode.__members__.values():
        raise cursor.error(f"op code {op_code:#04x} is not an RACP op code")
    if operator not in Operator.__members__.values():
        raise cursor.error(f"operator {operator:#04x} is not an RACP operator")
    problem = _operand_problem(OpCode(op_code), Operator(operator), operand, strict)
    if problem:
        raise cursor.error(f"{OpCode(op_code).name}: {problem}")
    return RacpValue(op_code, operator, operand)


def decode_racp_response(data: bytes, strict: bool = False) -> RacpValue:
    """An RACP value indicated by the meter, which must be a response (op code 0x05 or 0x06)."""
    value = decode_racp(data, strict)
    if value.op_code not in RESPONSE_OP_CODES:
        raise DecodeError(
            f"{NAME}: a meter indicates responses (op code 0x05 or 0x06), not op code {value.op_code:#04x}"
        )
    return value


def _operand_problem(op_code: OpCode, operator: Operator, operand: bytes, strict: bool) -> str | None:
    if op_code in RESPONSE_OP_CODES:
        if operator != Operator.NULL:
            return f"the operator of a response is Null (0x00), not {operator:#04x}"
        if op_code == OpCode.RESPONSE_CODE:
            if len(operand) != 2 and (strict or len(operand) < 2):
                return f"the operand is a request op code and a response code (2 bytes), not {len(operand)} bytes"
            return None
        # The Glucose Service count is a uint16; other services' 1- and 4-byte counts are accepted.
        allowed = (2,) if strict else (1, 2, 4)
        if len(operand) not in allowed:
            return f"the record count is {' or '.join(map(str, allowed))} bytes, not {len(operand)}"
        return None
    if op_code == OpCode.ABORT_OPERATION or operator in (
        Operator.NULL,
        Operator.ALL_RECORDS,
        Operator.FIRST_RECORD,
        Operator.LAST_RECORD,
    ):
        if operand and strict:
            return f"{operator.name} takes no operand, but {len(operand)} bytes follow"
        return None
    if not operand:
        return f"{operator.name} needs a filter type and a value"
    size = FILTER_VALUE_SIZES.get(FilterType(operand[0])) if operand[0] in FILTER_VALUE_SIZES else None
    if size is None:
        return f"filter type {operand[0]:#04x} is not one the Glucose Service defines" if strict else None
    expected = 1 + size * (2 if operator == Operator.WITHIN_RANGE_OF else 1)
    if len(operand) != expected:
        name = FilterType(operand[0]).name
        return f"{operator.name} with filter {name} takes {expected} operand bytes, not {len(operand)}"
    return None


def _sequence(value: int) -> bytes:
    if not 0 <= value <= MAX_SEQUENCE_NUMBER:
        raise ValueError(f"a sequence number is 0..{MAX_SEQUENCE_NUMBER}, not {value}")
    return value.to_bytes(2, "little")


def _command(op_code: OpCode, operator: Operator, operand: bytes = b"") -> bytes:
    return bytes((op_code, operator)) + operand


def racp_report_all() -> bytes:
    """Report every stored record."""
    return _command(OpCode.REPORT_STORED_RECORDS, Operator.ALL_RECORDS)


def racp_report_from(sequence_number: int) -> bytes:
    """Report the records whose sequence number is ``sequence_number`` or greater."""
    operand = bytes((FilterType.SEQUENCE_NUMBER,)) + _sequence(sequence_number)
    return _command(OpCode.REPORT_STORED_RECORDS, Operator.GREATER_THAN_OR_EQUAL_TO, operand)


def racp_report_after(sequence_number: int) -> bytes:
    """Report the records after the last one seen: sequence numbers greater than ``sequence_number``.

    RACP has no "greater than" operator, so this asks for ``sequence_number + 1`` or greater. After 0xFFFF there
    is nothing to ask for: ValueError (fetch all records instead).
    """
    if sequence_number == MAX_SEQUENCE_NUMBER:
        raise ValueError("no sequence number follows 0xFFFF: fetch all records instead")
    return racp_report_from(sequence_number + 1)


def racp_report_at_most(sequence_number: int) -> bytes:
    """Report the records whose sequence number is ``sequence_number`` or less."""
    operand = bytes((FilterType.SEQUENCE_NUMBER,)) + _sequence(sequence_number)
    return _command(OpCode.REPORT_STORED_RECORDS, Operator.LESS_THAN_OR_EQUAL_TO, operand)


def racp_report_range(first: int, last: int) -> bytes:
    """Report the records with sequence numbers ``first`` to ``last``, both included."""
    if first > last:
        raise ValueError(f"the range {first}..{last} is empty")
    operand = bytes((FilterType.SEQUENCE_NUMBER,)) + _sequence(first) + _sequence(last)
    return _command(OpCode.REPORT_STORED_RECORDS, Operator.WITHIN_RANGE_OF, operand)


def racp_report_first() -> bytes:
    return _command(OpCode.REPORT_STORED_RECORDS, Operator.FIRST_RECORD)


def racp_report_last() -> bytes:
    return _command(OpCode.REPORT_STORED_RECORDS, Operator.LAST_RECORD)


def racp_report_count() -> bytes:
    """Ask how many records are stored (answered by a Number of Stored Records Response)."""
    return _command(OpCode.REPORT_NUMBER_OF_STORED_RECORDS, Operator.ALL_RECORDS)


def racp_report_count_after(sequence_number: int) -> bytes:
    """Ask how many records follow ``sequence_number``."""
    if sequence_number == MAX_SEQUENCE_NUMBER:
        raise ValueError("no sequence number follows 0xFFFF")
    operand = bytes((FilterType.SEQUENCE_NUMBER,)) + _sequence(sequence_number + 1)
    return _command(OpCode.REPORT_NUMBER_OF_STORED_RECORDS, Operator.GREATER_THAN_OR_EQUAL_TO, operand)


def racp_delete_all() -> bytes:
    """Delete every stored record. The gateway never sends this by itself: the meter is the resident's record."""
    return _command(OpCode.DELETE_STORED_RECORDS, Operator.ALL_RECORDS)


def racp_abort() -> bytes:
    """Abort the running operation."""
    return _command(OpCode.ABORT_OPERATION, Operator.NULL)
