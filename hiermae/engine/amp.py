"""Mixed precision where mmengine's `AmpOptimWrapper` refuses to run: autocast on the CPU (bf16)."""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """Run forward passes under `torch.autocast(device_type, dtype)`; bf16 keeps fp32's range, so no loss scaling."""

    def __init__(self, *args, dtype: str = "bfloat16", device_type: str = "cpu", **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.cast_dtype = getattr(torch, dtype)
        self.device_type = device_type

    @contextmanager
    def optim_context(self, model: torch.nn.Module) -> Iterator[None]:
        with super().optim_context(model), torch.autocast(device_type=self.device_type, dtype=self.cast_dtype):
            yield
