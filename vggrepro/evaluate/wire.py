"""The protobuf wire format, read with numpy and nothing else: the part shared by the readers of
Caffe models (:mod:`vggrepro.evaluate.caffe`) and ONNX files (:mod:`vggrepro.evaluate.onnx_weights`).

A message is a run of fields, each a *tag* (a varint holding ``field_number << 3 | wire_type``) and
a value: a varint (wire type 0), 8 bytes (1), a length (varint) and that many bytes (2: strings,
sub-messages and packed arrays), or 4 bytes (5). A varint stores 7 bits per byte, low bits first,
the top bit saying "more bytes follow". Every length is checked against the bytes that are really
there, so a truncated or garbled file is a ValueError naming the byte offset: never a hang, an
IndexError or an allocation larger than the file.
"""

from __future__ import annotations

import numpy as np

VARINT, FIXED64, LENGTH, GROUP_START, GROUP_END, FIXED32 = 0, 1, 2, 3, 4, 5


def signed(value: int) -> int:
    """A varint read as int32/int64: negative numbers are sent as 64-bit two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value


class WireReader:
    """Reads fields between byte offsets ``start`` and ``end``; every offset is absolute in the file.
    ``FORMAT`` names the kind of file in every error ("Caffe model", "ONNX model")."""

    FORMAT = "protobuf message"

    def __init__(self, data: bytes):
        self.data = memoryview(bytes(data))
        self.u8 = np.frombuffer(self.data, dtype=np.uint8)

    def fail(self, pos: int, message: str):
        raise ValueError(f"not a valid {self.FORMAT}: at byte {pos}: {message}")

    def varint(self, pos: int, end: int, what: str) -> tuple[int, int]:
        value = 0
        for i in range(10):  # a 64-bit varint has at most 10 bytes
            if pos + i >= end:
                self.fail(pos, f"{what} (a varint) is cut off at byte {end}: the file is truncated or garbled")
            byte = self.data[pos + i]
            value |= (byte & 0x7F) << (7 * i)
            if byte < 0x80:
                return value & ((1 << 64) - 1), pos + i + 1
        self.fail(pos, f"{what} (a varint) runs over 10 bytes: the file is garbled")

    def next_field(self, pos: int, end: int, message: str) -> tuple[int, int, int, int, int]:
        """One field at ``pos``: (number, wire type, a, b, next position). For a varint ``a`` is its
        value; for the other wire types ``data[a:b]`` are its bytes. Always moves forward."""
        key, p = self.varint(pos, end, f"a field tag of {message}")
        number, wire = key >> 3, key & 7
        if number == 0:
            self.fail(pos, f"field number 0 in {message}: the file is garbled")
        if wire == VARINT:
            value, q = self.varint(p, end, f"field {number} of {message}")
            return number, wire, value, 0, q
        if wire == LENGTH:
            length, p = self.varint(p, end, f"the length of field {number} of {message}")
            if length > end - p:
                self.fail(
                    pos,
                    f"field {number} of {message} claims {length} bytes but only {end - p} remain "
                    f"(up to byte {end}): the file is truncated or garbled",
                )
            return number, wire, p, p + length, p + length
        if wire in (FIXED32, FIXED64):
            size = 4 if wire == FIXED32 else 8
            if size > end - p:
                self.fail(
                    pos,
                    f"field {number} of {message} needs {size} bytes but only {end - p} remain: the file is truncated",
                )
            return number, wire, p, p + size, p + size
        self.fail(
            pos,
            f"field {number} of {message} has wire type {wire}, which {self.FORMAT}s do not use "
            "(expected 0, 1, 2 or 5): the file is garbled",
        )

    def expect(self, wire: int, want: int, pos: int, what: str) -> None:
        names = {VARINT: "a varint", FIXED64: "8 bytes", LENGTH: "length-delimited bytes", FIXED32: "4 bytes"}
        if wire != want:
            self.fail(pos, f"{what} should be {names[want]}, found wire type {wire}: the file is garbled")

    def string(self, a: int, b: int, pos: int, what: str) -> str:
        try:
            return str(self.data[a:b], "utf-8")
        except UnicodeDecodeError:
            self.fail(pos, f"{what} is not UTF-8 text: the file is garbled")

    def run(self, tag: int, end: int, tag_byte: int, size: int, dtype: str) -> tuple[np.ndarray, int]:
        """Unpacked repeated numbers: consecutive records of one tag byte and ``size`` bytes, read at
        once with numpy rather than one by one. Returns the numbers and the position after them."""
        record = size + 1
        if self.data[tag] != tag_byte:  # an unusual (longer) encoding of the tag: read one number
            _, _, a, b, pos = self.next_field(tag, end, "a blob")
            return np.frombuffer(self.data[a:b], dtype=dtype), pos
        most = (end - tag) // record
        tags = self.u8[tag : tag + most * record : record]
        count = int(np.argmin(tags == tag_byte)) if not np.all(tags == tag_byte) else most
        if count == 0:  # the first record is cut off: next_field names the problem
            self.next_field(tag, end, "a blob")
            self.fail(tag, "a number of a blob is cut off")
        records = self.u8[tag : tag + count * record].reshape(count, record)[:, 1:]
        return np.ascontiguousarray(records).view(dtype).reshape(count), tag + count * record
