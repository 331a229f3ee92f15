"""Open a file for reading only when it is a regular file, so that no read can block forever.

A name listed as a file can later be something else: a symlink whose target was replaced by a FIFO (named pipe),
a device, a folder. `open()` of a FIFO waits for a writer without end, and a read of a character device such as
`/dev/zero` never ends. `open_regular_file` opens without blocking (`O_NONBLOCK`, which a FIFO needs to open at
once), checks the type of the file it opened (`fstat` on the descriptor, so the check and the read concern the
same file, with no window for a swap between them), and only then hands back an ordinary blocking stream.
"""

import os
import stat
from pathlib import Path
from typing import BinaryIO

KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotARegularFileError(OSError):
    """A path to read that names a FIFO, a device, a folder or a socket instead of a regular file."""


def file_kind(mode: int) -> str:
    """What a `st_mode` describes, in words ("a FIFO (named pipe)", ...)."""
    return next((name for is_kind, name in KINDS if is_kind(mode)), "not a regular file")


def open_regular_file(path: str | Path) -> BinaryIO:
    """`open(path, 'rb')` for a regular file, else `NotARegularFileError` naming what `path` is; never blocks."""
    return open(path, "rb", opener=regular_file_opener)


def regular_file_opener(path: str, flags: int) -> int:
    """An `open()` opener: a descriptor of `path` when it is a regular file (checked on the opened file)."""
    descriptor = os.open(path, flags | os.O_NONBLOCK)
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFileError(
                f"{path} is {file_kind(mode)}, not a regular file: not read, since a read could wait forever"
            )
        os.set_blocking(descriptor, True)
        return descriptor
    except BaseException:
        os.close(descriptor)
        raise


def read_regular_bytes(path: str | Path) -> bytes:
    """The bytes of the regular file `path` (`open_regular_file`'s checks)."""
    with open_regular_file(path) as stream:
        return stream.read()
