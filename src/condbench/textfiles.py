"""Reading a text file a user provides (pairs lists, split csvs, prompt files, keypoint files) as UTF-8.

Every reader of such a file goes through :func:`read_user_text`, so a file in another encoding, or one that is
not text at all, stops with one message naming the file, the line and byte where it breaks, and the fix
(save it as UTF-8), instead of Python's bare "'utf-8' codec can't decode byte". Torch-free.
"""
from __future__ import annotations

import codecs
from pathlib import Path

FIX = ("save the file as UTF-8 text (an editor's Save As with encoding UTF-8, or "
       "`iconv -f ENCODING -t UTF-8 FILE > NEW`, e.g. ENCODING LATIN1 or UTF-16)")


class TextFileError(ValueError):
    """A user's text file that is not UTF-8 text; the message names the file, where it breaks and the fix."""


def _line_of(data: bytes, offset: int) -> int:
    """The 1-based line holding byte ``offset`` of ``data``."""
    return data.count(b"\n", 0, offset) + 1


def _encoding_hint(data: bytes) -> str:
    """What the file's first bytes say about its encoding, when they say something."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return " (it starts with a UTF-16 byte-order mark: the file is UTF-16)"
    return ""


def read_user_text(path: str | Path, what: str) -> str:
    """The text of the user's file ``path`` (``what``: e.g. "DeepFashion pairs file"), decoded as UTF-8 with a
    leading byte-order mark dropped; a :class:`TextFileError` for bytes that are not UTF-8 or for a NUL byte
    (a UTF-16 or binary file: text files never hold one)."""
    path = Path(path)
    data = path.read_bytes()
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as error:
        offset = start + error.start
        raise TextFileError(f"{path}, line {_line_of(data, offset)}: the {what} is not UTF-8 text: byte "
                            f"0x{data[offset]:02x} at byte offset {offset} cannot be decoded ({error.reason})"
                            f"{_encoding_hint(data)}; {FIX}") from None
    nul = data.find(b"\0")
    if nul >= 0:
        raise TextFileError(f"{path}, line {_line_of(data, nul)}: the {what} holds a NUL byte at byte offset {nul}, "
                            f"so it is not plain text (a UTF-16 or binary file?); {FIX}")
    return text
