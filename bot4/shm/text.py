"""Short UTF-8 texts (names, reasons) stored in a fixed number of segment words."""

from __future__ import annotations

__all__ = ["decode_text", "encode_text"]


def encode_text(text: str, words: int) -> list[int]:
    """UTF-8 ``text`` cut to fit, as ``words`` little-endian int64 words."""
    raw = text.encode("utf-8", "replace")[: words * 8]
    while True:
        try:
            raw.decode()
            break
        except UnicodeDecodeError:
            raw = raw[:-1]
    raw = raw.ljust(words * 8, b"\0")
    return [int.from_bytes(raw[i * 8 : i * 8 + 8], "little", signed=True) for i in range(words)]


def decode_text(values: tuple[int, ...] | list[int]) -> str:
    """Inverse of :func:`encode_text` (bytes no bot4 process wrote decode as U+FFFD)."""
    return b"".join(v.to_bytes(8, "little", signed=True) for v in values).rstrip(b"\0").decode("utf-8", "replace")
