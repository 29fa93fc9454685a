"""Just enough of vmprof's file format to recognise a profile before sending it.

The static header is five little-endian 64-bit words: 0, 3, 0, period in
microseconds, 0 (1 on 64-bit Windows). Word 1 being 3 at offset 8 is how
vmprof's own reader tells a 64-bit little-endian file; we accept only those.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import zlib
from dataclasses import dataclass
from typing import IO, Optional

STATIC_HEADER_LEN = 40
GZIP_MAGIC = b"\x1f\x8b"
_WORD0 = b"\x00" * 8
_WORD1 = b"\x03" + b"\x00" * 7

MARKER_HEADER = 0x05
MARKER_TIME_N_ZONE = 0x06


class NotAProfile(ValueError):
    """The bytes are not a 64-bit little-endian vmprof profile."""


@dataclass
class ProfileInfo:
    period: float  # seconds, as requested from vmprof
    start: Optional[float]  # Unix seconds from the TIME_N_ZONE record, if present


def is_gzip(head: bytes) -> bool:
    return head[:2] == GZIP_MAGIC


def parse_head(head: bytes) -> ProfileInfo:
    """Check the static header in the first bytes of a file and read its period.

    `head` should be the first few hundred bytes; only the static header is
    required, the start time is read when the HEADER and TIME_N_ZONE records
    that vmprof writes right after it are there too.
    """
    if len(head) < 16 or head[:8] != _WORD0 or head[8:16] != _WORD1:
        raise NotAProfile("not a vmprof profile (no 64-bit little-endian vmprof header)")
    if len(head) < STATIC_HEADER_LEN:
        raise NotAProfile(f"not a vmprof profile (only {len(head)} bytes, header is truncated)")
    word2, period_us, word4 = struct.unpack_from("<qqq", head, 16)
    if word2 != 0 or word4 not in (0, 1) or not (0 < period_us < 1_000_000):
        raise NotAProfile("not a vmprof profile (bad values in the static header)")
    return ProfileInfo(period=period_us / 1e6, start=_start_time(head))


def _start_time(head: bytes) -> Optional[float]:
    pos = STATIC_HEADER_LEN
    # HEADER: marker, be16 version, u8 mode, u8 name length, name
    if len(head) < pos + 5 or head[pos] != MARKER_HEADER:
        return None
    pos += 5 + head[pos + 4]
    # TIME_N_ZONE: marker, s64 seconds, s64 microseconds, 8 bytes zone
    if len(head) < pos + 17 or head[pos] != MARKER_TIME_N_ZONE:
        return None
    seconds, micros = struct.unpack_from("<qq", head, pos + 1)
    if seconds <= 0 or not (0 <= micros < 1_000_000):
        return None
    return float(seconds + micros / 1e6)


def gunzip(source: IO[bytes], dest: IO[bytes]) -> None:
    """Decompress a gzip stream; raise NotAProfile if it is damaged."""
    try:
        with gzip.GzipFile(fileobj=source, mode="rb") as unzipped:
            shutil.copyfileobj(unzipped, dest, 1024 * 1024)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise NotAProfile(f"damaged gzip data ({exc})") from None
