"""MMEngine's DDP wrapper, usable on CPU workers (gloo)."""

from __future__ import annotations

from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class DeviceAwareDDP(MMDistributedDataParallel):
    """MMEngine's DDP wrapper, minus ``device_ids`` for CPU modules (gloo).

    MMEngine always passes ``device_ids=[LOCAL_RANK]``, which torch refuses
    for a model on the CPU.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        if next(module.parameters()).device.type == "cpu":
            device_ids = None
        super().__init__(module=module, device_ids=device_ids, **kwargs)
