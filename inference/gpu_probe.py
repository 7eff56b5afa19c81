"""Print the GPUs torch can use as one JSON line. Run as ``python -m inference.gpu_probe``.

Runs in its own process (see ``hardware.probe_gpus_in_subprocess``): importing
torch is slow and a GPU driver may hang or crash while initialising.
"""

from __future__ import annotations

import json


def list_gpus() -> list[dict]:
    """CUDA/ROCm, Intel XPU and Apple MPS devices with their total and free memory."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        backend = "rocm" if getattr(torch.version, "hip", None) else "cuda"
        for index in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(index)
            name = torch.cuda.get_device_name(index)
            gpus.append({"backend": backend, "index": index, "name": name, "total_bytes": total, "free_bytes": free})
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        for index in range(xpu.device_count()):
            total = xpu.get_device_properties(index).total_memory
            free = xpu.mem_get_info(index)[0] if hasattr(xpu, "mem_get_info") else total
            gpus.append({"backend": "xpu", "index": index, "name": xpu.get_device_name(index),
                         "total_bytes": total, "free_bytes": free})
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        total = torch.mps.recommended_max_memory()
        free = total - torch.mps.current_allocated_memory()
        gpus.append({"backend": "mps", "index": 0, "name": "Apple GPU", "total_bytes": total, "free_bytes": free})
    return gpus


if __name__ == "__main__":
    print(json.dumps(list_gpus()), flush=True)
