"""Which checkpoint `--resume` continues from, and the `last_checkpoint` pointer that names it.

mmengine writes the absolute path of the latest checkpoint into `<work_dir>/last_checkpoint` (truncating the file
first) and resumes from whatever it names: a copied work dir resumed from the original folder's files, an empty or
dangling pointer gave `FileNotFoundError:  can not be found.`, a truncated checkpoint a raw zip-reader error, and a
work dir without checkpoints trained from scratch after printing "resumed from None". Here the pointer holds the
file name relative to the work dir (written by rename), and resuming takes the newest checkpoint that is intact
and finite, saying which files it skipped and why, or stops with `NothingToResumeError`.
"""

import os
import re
import warnings
import zipfile
from pathlib import Path

from hiermae.checkpoints.keys import CheckpointError, compact, non_finite_tensors
from hiermae.checkpoints.safe_load import UnsafeCheckpointError, load_checkpoint_file
from hiermae.utils import staged_target, write_bytes_atomically

POINTER = "last_checkpoint"
CHECKPOINT_NAME = re.compile(r"(?:iter|epoch)_(\d+)\.pth")


class NothingToResumeError(FileNotFoundError):
    """`--resume` in a work dir that holds no checkpoint that can be read."""


class ResumeFallbackWarning(UserWarning):
    """The latest checkpoint could not be read; an older intact one is resumed instead."""


def write_pointer(work_dir: str | Path, checkpoint: str | Path) -> None:
    """Record `checkpoint` as the latest save, relative to `work_dir` when inside it, replacing the file by rename."""
    work_dir = Path(work_dir)
    checkpoint = Path(checkpoint)
    inside = checkpoint.resolve().is_relative_to(work_dir.resolve())
    text = os.path.relpath(checkpoint.resolve(), work_dir.resolve()) if inside else str(checkpoint)
    write_bytes_atomically(work_dir / POINTER, text.encode())


def read_pointer(work_dir: str | Path) -> Path | None:
    """The checkpoint `last_checkpoint` names, resolved in `work_dir`; None when the pointer is absent or empty.

    A relative name is taken in `work_dir`. An absolute one outside `work_dir` (older pointers, or a work dir
    copied elsewhere) is replaced by the file of the same name in `work_dir` when there is one.
    """
    work_dir = Path(work_dir)
    pointer = work_dir / POINTER
    # undecodable bytes or a NUL become U+FFFD: the pointer then names no file, and resume falls back with a warning
    text = pointer.read_bytes().decode(errors="replace").replace("\0", "\ufffd").strip() if pointer.is_file() else ""
    if not text:
        return None
    named = Path(text)
    if not named.is_absolute():
        return work_dir / named
    local = work_dir / named.name
    if not named.resolve().is_relative_to(work_dir.resolve()) and local.is_file():
        return local
    return named


def damage(path: Path) -> str | None:
    """Why a checkpoint file cannot be resumed from (missing, truncated, corrupt, non-finite), or None if it is good.

    torch writes checkpoints as zip archives with a CRC per entry: a truncated file lacks the archive's
    directory, and a damaged one fails its CRC. A file that reads as data is then checked for NaN or infinite
    tensors (saved by a run that diverged). One that only full unpickling could read is left to the run's fit
    check, which reads it with `--trust-checkpoint` or refuses it.
    """
    if not path.is_file():
        return "does not exist"
    try:
        with zipfile.ZipFile(path) as archive:
            broken = archive.testzip()
    except (zipfile.BadZipFile, OSError) as error:
        return f"unreadable ({error})"
    if broken:
        return f"corrupt entry {broken}"
    try:
        bad = non_finite_tensors(load_checkpoint_file(path))
    except UnsafeCheckpointError:
        return None
    except CheckpointError as error:
        return f"unreadable ({error})"
    return f"{len(bad)} non-finite tensors [{compact(bad, 3)}] (saved after the run diverged)" if bad else None


def saved_checkpoints(work_dir: Path) -> list[Path]:
    """`iter_N.pth` / `epoch_N.pth` files of `work_dir`, newest (largest N) first."""
    found = [path for path in work_dir.glob("*.pth") if CHECKPOINT_NAME.fullmatch(path.name)]
    return sorted(found, key=lambda path: int(CHECKPOINT_NAME.fullmatch(path.name).group(1)), reverse=True)


def checkpoint_to_resume(work_dir: str | Path) -> Path:
    """The newest good checkpoint of `work_dir` (intact and finite): the one `last_checkpoint` names, else the
    highest-numbered.

    Skipped files are named in a `ResumeFallbackWarning`; `NothingToResumeError` when no checkpoint is intact.
    """
    work_dir = Path(work_dir)
    pointed = read_pointer(work_dir)
    candidates = ([pointed] if pointed else []) + [p for p in saved_checkpoints(work_dir) if p != pointed]
    skipped = [f"{work_dir / POINTER} is empty"] if (work_dir / POINTER).is_file() and pointed is None else []
    for candidate in candidates:
        reason = damage(candidate)
        if reason is None:
            if skipped:
                warnings.warn(
                    f"--resume: {'; '.join(skipped)}. Resuming from the newest intact checkpoint {candidate}.",
                    ResumeFallbackWarning,
                    stacklevel=2,
                )
            return candidate
        skipped.append(f"could not read {candidate}: {reason}")
    found = "; ".join(skipped) if skipped else f"it holds no {POINTER} and no iter_N.pth or epoch_N.pth"
    raise NothingToResumeError(
        f"--resume: nothing to resume in {work_dir}: {found}. Run without --resume to start from scratch, or pass "
        "--resume PATH to continue from a checkpoint elsewhere."
    )


def remove_stale_partials(work_dir: str | Path) -> list[Path]:
    """Remove the temporary files that a killed save of a checkpoint or of `last_checkpoint` left in `work_dir`
    (hidden `.iter_N.pth.*.partial`, as large as a checkpoint); return them. Call it before the run saves."""
    stale = [
        path
        for path in Path(work_dir).glob(".*.partial")
        if (target := staged_target(path)) is not None and (target == POINTER or CHECKPOINT_NAME.fullmatch(target))
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
