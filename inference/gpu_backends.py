"""The GPUs llama.cpp itself can use, and loading its GPU engines.

A source install built with a GPU toolkit (packaging/bootstrap.py) has the
GPU backend as a loadable library next to the CPU variants
(``libggml-cuda.so``, ``-hip``, ``-vulkan``…; ``GGML_BACKEND_DL``).
llama-cpp-python never loads it, so the engine process loads it before a
model that offloads layers, and the GPU probe loads it to ask llama.cpp
which devices it sees and how much memory each has free: the same devices,
in the same order, that llama.cpp's ``main_gpu`` counts.

Without such a library (CPU-only builds) nothing is loaded and no GPU is
listed; a build with its GPU backend linked in (e.g. Metal on macOS) lists
its devices all the same.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from inference.cpu_backends import llama_library_dir, loaded_ggml

log = logging.getLogger(__name__)

_GPU_BACKEND_FILE = re.compile(
    r"^(?:lib)?ggml-(?P<name>cuda|hip|vulkan|metal|sycl|musa|opencl)\.(?:so|dll|dylib)$")
# ggml_backend_dev_type
_DEVICE_KINDS = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel", 4: "meta"}


@dataclass(frozen=True)
class LlamaDevice:
    """A device registered in llama.cpp; for offload targets ``index`` is its ``main_gpu`` number."""

    backend: str  # llama.cpp's name for the backend: "CPU", "CUDA", "ROCm", "Vulkan", "Metal"…
    name: str  # the device's description, e.g. "NVIDIA GeForce RTX 4070"
    kind: str  # "cpu", "gpu", "igpu" (integrated, shares system memory) or "accel"
    total_bytes: int
    free_bytes: int
    device_id: str = ""  # the PCI bus id where known: one card seen by two backends has one id
    index: int = -1


class _DeviceProps(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("description", ctypes.c_char_p),
        ("memory_free", ctypes.c_size_t),
        ("memory_total", ctypes.c_size_t),
        ("type", ctypes.c_int),
        ("device_id", ctypes.c_char_p),
        ("caps", ctypes.c_bool * 5),
    ]


def gpu_backend_files(folder: Path) -> list[Path]:
    """The loadable GPU backend libraries in ``folder`` (none in a CPU-only build)."""
    try:
        return sorted(path for path in folder.iterdir() if _GPU_BACKEND_FILE.match(path.name) and path.is_file())
    except OSError:
        return []


def load_gpu_backends(folder: Path | None = None) -> list[str]:
    """Load llama.cpp's GPU backend libraries (once per process); return the file names loaded.

    A library that cannot be loaded (no GPU driver on this machine, say) is
    logged and skipped: the model then runs on the CPU.
    """
    files = gpu_backend_files(folder or llama_library_dir())
    if not files:
        return []
    ggml = _ggml_with_device_api()
    if ggml is None or _gpu_device_count(ggml):
        return []  # nothing to load with, or loaded earlier in this process
    loaded = []
    for path in files:
        if ggml.ggml_backend_load(os.fsencode(path)):
            loaded.append(path.name)
        else:
            log.warning("llama.cpp's GPU engine %s could not be loaded (is the GPU driver installed?)", path.name)
    return loaded


def llama_devices() -> list[LlamaDevice]:
    """Every device llama.cpp has registered, in its order (the CPU included).

    Call :func:`load_gpu_backends` first in a process with a loadable GPU backend.
    """
    ggml = _ggml_with_device_api()
    if ggml is None:
        return []
    devices = []
    for number in range(ggml.ggml_backend_dev_count()):
        device = ggml.ggml_backend_dev_get(number)
        props = _DeviceProps()
        ggml.ggml_backend_dev_get_props(device, ctypes.byref(props))
        devices.append(LlamaDevice(
            backend=(ggml.ggml_backend_reg_name(ggml.ggml_backend_dev_backend_reg(device)) or b"").decode(),
            name=(props.description or props.name or b"").decode(errors="replace"),
            kind=_DEVICE_KINDS.get(props.type, "other"),
            total_bytes=props.memory_total,
            free_bytes=props.memory_free,
            device_id=(props.device_id or b"").decode(errors="replace"),
        ))
    return devices


def offload_targets(devices: list[LlamaDevice]) -> list[LlamaDevice]:
    """The devices llama.cpp offloads to, numbered as its ``main_gpu`` counts them.

    As llama.cpp's model loader does: discrete GPUs in order, one per card
    (a card two backends both see counts once), remote (RPC) devices left
    out; integrated GPUs only when there is no discrete one.
    """
    discrete: list[LlamaDevice] = []
    integrated: list[LlamaDevice] = []
    for device in devices:
        if device.backend == "RPC":
            continue
        if device.kind == "gpu" and not any(device.device_id and device.device_id == seen.device_id
                                            for seen in discrete):
            discrete.append(device)
        elif device.kind == "igpu" and (not integrated or integrated[-1].backend == device.backend):
            integrated.append(device)
    return [replace(device, index=number) for number, device in enumerate(discrete or integrated)]


def _gpu_device_count(ggml: ctypes.CDLL) -> int:
    return sum(1 for number in range(ggml.ggml_backend_dev_count())
               if _DEVICE_KINDS.get(ggml.ggml_backend_dev_type(ggml.ggml_backend_dev_get(number))) in ("gpu", "igpu"))


def _ggml_with_device_api() -> ctypes.CDLL | None:
    """llama.cpp's own ggml library with the device functions typed, or None when it is not found."""
    ggml = loaded_ggml()
    if ggml is None:
        return None
    ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
    ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    ggml.ggml_backend_dev_type.restype = ctypes.c_int
    ggml.ggml_backend_dev_type.argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_dev_get_props.restype = None
    ggml.ggml_backend_dev_get_props.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DeviceProps)]
    ggml.ggml_backend_dev_backend_reg.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_backend_reg.argtypes = [ctypes.c_void_p]
    ggml.ggml_backend_reg_name.restype = ctypes.c_char_p
    ggml.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
    return ggml
