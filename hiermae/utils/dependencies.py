"""Optional parts of the stack: `make demo` installs the core only, `make install-transfer` adds the rest.

The transfer stack (mmcv with its compiled ops, mmdet, mmsegmentation, pycocotools, scikit-image) is only needed
for detection and segmentation; whatever needs it calls `require_transfer_stack` first, so a core-only install
names the command that fixes it instead of failing deep inside an import.
"""

import importlib.util

INSTALL_TRANSFER = "make install-transfer"
# what a user would call the module, where that differs from its import name
PACKAGE_NAMES = {"mmcv._ext": "mmcv's compiled ops", "mmseg": "mmsegmentation", "skimage": "scikit-image"}


class MissingDependencyError(RuntimeError):
    """A package of the transfer stack is not installed.

    Not an ImportError on purpose: mmengine rewrites an ImportError raised by a config's `custom_imports` into a
    message about PYTHONPATH, which would hide the install command.
    """


def is_installed(module: str) -> bool:
    """Whether `module` (dotted names allowed, e.g. `mmcv._ext`) can be found, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a parent package is missing
        return False


def require_transfer_stack(*modules: str, purpose: str) -> None:
    """Raise `MissingDependencyError` naming the install command when any of `modules` is missing."""
    missing = [PACKAGE_NAMES.get(module, module) for module in modules if not is_installed(module)]
    if missing:
        raise MissingDependencyError(
            f"{purpose} needs {' and '.join(missing)}, not installed in this environment: run `{INSTALL_TRANSFER}` "
            "(the core install of `make demo` leaves the transfer stack out; mmcv compiles for about 5 minutes)"
        )


def require_mmdet(purpose: str = "detection (mmdet)") -> None:
    """mmdet and the mmcv ops its models run on."""
    require_transfer_stack("mmcv._ext", "mmdet", purpose=purpose)


def require_mmseg(purpose: str = "segmentation (mmseg)") -> None:
    """mmsegmentation, the mmcv ops its models run on, and ftfy (which mmseg imports unconditionally)."""
    require_transfer_stack("mmcv._ext", "mmseg", "ftfy", purpose=purpose)
