"""Replace a file in one rename, so its name always holds either the old complete file or the new complete one.

A write straight into the final path truncates the old file first: a kill, a full disk or an error half-way then
leaves a damaged file under the good name. Writing a temporary file in the same folder (same file system, so
the rename is atomic), syncing it and renaming it over the target avoids that.
"""

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
