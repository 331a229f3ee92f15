"""Replace a file in one rename, so its name always holds either the old complete file or the new complete one.

A write straight into the final path truncates the old file first: a kill, a full disk or an error half-way then
leaves a damaged file under the good name. Writing a temporary file in the same folder (same file system, so
the rename is atomic), syncing it and renaming it over the target avoids that. The temporary file is removed when
the write fails; only a process killed outright (SIGKILL, or a signal without a handler that raises) leaves it,
and `staged_target` lets the next start recognise and remove such leftovers.
"""

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STAGED_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.partial")  # the mkstemp name below: 8 random characters


@contextmanager
def replace_atomically(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; when the block succeeds, sync it and rename it over `target`.

    If the block (or the sync) fails, the temporary file is removed and `target` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    os.close(handle)
    staged = Path(name)
    os.chmod(staged, 0o666 & ~current_umask())  # mkstemp's 0600 would hide the file from the user's group
    try:
        yield staged
        with staged.open("rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(staged, target)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and setting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomically(target: str | Path, data: bytes) -> None:
    """Write `data` to `target` through `replace_atomically`."""
    with replace_atomically(target) as staged:
        staged.write_bytes(data)


def write_json(target: str | Path, data: object) -> None:
    """Write `data` as indented JSON to `target` through `replace_atomically` (a result file is whole or absent)."""
    with replace_atomically(target) as staged:
        staged.write_text(json.dumps(data, indent=2))


def staged_target(path: str | Path) -> str | None:
    """The name of the file a temporary file of `replace_atomically` was to replace, or None for other files."""
    match = STAGED_NAME.fullmatch(Path(path).name)
    return match["target"] if match else None
