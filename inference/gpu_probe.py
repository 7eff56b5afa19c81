"""Print the GPUs llama.cpp and torch can use as one JSON line. Run as ``python -m inference.gpu_probe``.

Runs in its own process (see ``hardware.probe_gpus_in_subprocess``; the
frozen app runs it as ``hearth --probe-gpus``): importing torch is slow, and
a GPU driver may hang or crash while initialising.
"""

from __future__ import annotations

import json
import sys


def list_llama_gpus() -> list[dict]:
    """The devices llama.cpp offloads to, with their total and free memory, after loading its GPU backends."""
    from inference.cpu_backends import load_cpu_backend
    from inference.gpu_backends import llama_devices, load_gpu_backends, offload_targets

    load_cpu_backend()
    load_gpu_backends()
    return [{"backend": device.backend, "index": device.index, "name": device.name,
             "total_bytes": device.total_bytes, "free_bytes": device.free_bytes,
             "integrated": device.kind == "igpu"} for device in offload_targets(llama_devices())]


def list_torch_gpus() -> list[dict]:
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
        gpus.append({"backend": "mps", "index": 0, "name": "Apple GPU", "total_bytes": total, "free_bytes": free,
                     "integrated": True})
    return gpus


def probe() -> dict:
    """Both engines' GPUs; an engine that fails to answer adds a note instead of stopping the other."""
    from inference.hardware import llama_has_gpu_backend, torch_gpu_backends

    found: dict = {"llama": [], "torch": [], "notes": []}
    for key, wanted, lister in (("llama", llama_has_gpu_backend, list_llama_gpus),
                                ("torch", torch_gpu_backends, list_torch_gpus)):
        try:
            found[key] = lister() if wanted() else []
        except Exception as exc:  # noqa: BLE001 - a broken driver or library must not hide the other engine
            found["notes"].append(f"{key}: {type(exc).__name__}: {exc}")
    return found


def main() -> int:
    """Print what :func:`probe` found as the last line of output."""
    print(json.dumps(probe()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
