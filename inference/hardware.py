"""What this computer can run models on: CPU, memory and GPUs.

Cheap facts (cores, instruction sets, RAM) are read directly. GPUs are asked
of torch, but only when the installed torch was built with a GPU backend (read
from ``torch/version.py`` without importing torch), and then in a separate
short-lived process: importing torch costs 1-2 s and initialising a GPU
driver can hang or crash, neither of which may touch the app.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

GPU_PROBE_TIMEOUT_S = 60


@dataclass(frozen=True)
class CpuFacts:
    """The processor as the engine sees it."""

    physical_cores: int
    logical_cores: int
    features: frozenset[str] = frozenset()

    @classmethod
    def probe(cls) -> CpuFacts:
        """Count this machine's cores (psutil) and read its instruction sets where the OS says."""
        import psutil

        logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
        physical = psutil.cpu_count(logical=False) or logical
        return cls(physical_cores=physical, logical_cores=logical, features=frozenset(cpu_features()))

    def describe(self) -> str:
        """E.g. ``2 cores (AVX2, FMA)``."""
        shown = [name.upper() for name in ("avx512f", "avx2", "fma", "f16c", "neon") if name in self.features]
        plural = "s" if self.physical_cores != 1 else ""
        return f"{self.physical_cores} core{plural}" + (f" ({', '.join(shown)})" if shown else "")


@dataclass(frozen=True)
class GpuDevice:
    """One GPU and its memory, as torch reports it."""

    backend: str  # "cuda", "rocm", "mps" or "xpu"
    index: int
    name: str
    total_bytes: int
    free_bytes: int

    @property
    def torch_device(self) -> str:
        """The torch device string, e.g. ``cuda:0`` (ROCm also uses ``cuda``)."""
        kind = "cuda" if self.backend in ("cuda", "rocm") else self.backend
        return kind if kind == "mps" else f"{kind}:{self.index}"


@dataclass(frozen=True)
class Hardware:
    """Everything the execution selector needs to know about this machine."""

    cpu: CpuFacts
    ram_total_bytes: int
    ram_available_bytes: int
    gpus: tuple[GpuDevice, ...] = ()
    llama_gpu_offload: bool = False
    torch_gpu_backends: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    # GPUs the operating system reports that no installed engine can use (e.g. "NVIDIA H200").
    unusable_gpus: tuple[str, ...] = ()


def probe_hardware() -> Hardware:
    """Look at this machine. Slow parts (torch) run in a subprocess; never raises."""
    import psutil

    memory = psutil.virtual_memory()
    backends = torch_gpu_backends()
    gpus: tuple[GpuDevice, ...] = ()
    notes: list[str] = []
    if backends:
        gpus, note = probe_gpus_in_subprocess()
        if note:
            notes.append(note)
    offload = llama_supports_gpu_offload()
    return Hardware(
        cpu=CpuFacts.probe(),
        ram_total_bytes=memory.total,
        ram_available_bytes=memory.available,
        gpus=gpus,
        llama_gpu_offload=offload,
        torch_gpu_backends=backends,
        notes=tuple(notes),
        unusable_gpus=() if gpus or offload else system_gpu_names(),
    )


def cpu_features() -> set[str]:
    """Instruction-set flags of the CPU (Linux: /proc/cpuinfo; macOS arm64: NEON); empty if unknown."""
    if sys.platform.startswith("linux"):
        try:
            text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
        match = re.search(r"^(flags|Features)\s*:\s*(.*)$", text, re.MULTILINE)
        flags = set(match.group(2).split()) if match else set()
        return flags | ({"neon"} if "asimd" in flags else set())
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return {"neon"}
    return set()


def system_gpu_names(sysfs: Path = Path("/sys/class/drm")) -> tuple[str, ...]:
    """Discrete GPUs the OS knows of, named as well as can be without a GPU library (Linux; else empty).

    NVIDIA's driver names its cards in /proc; AMD and Intel ones are named
    by vendor. Integrated Intel graphics are left out: no engine here would
    run a model faster on them than on the CPU.
    """
    if not sys.platform.startswith("linux"):
        return ()
    names = []
    for card in sorted(sysfs.glob("card[0-9]*")):
        if "-" in card.name:
            continue  # a connector (card0-HDMI-A-1), not a device
        try:
            vendor = (card / "device" / "vendor").read_text(encoding="ascii").strip().lower()
        except OSError:
            continue
        if vendor == "0x10de":
            names.append(_nvidia_name(card) or "NVIDIA GPU")
        elif vendor == "0x1002":
            names.append("AMD GPU")
    return tuple(names)


def _nvidia_name(card: Path) -> str:
    """The model name NVIDIA's driver gives the card in /proc (e.g. "NVIDIA GeForce RTX 4070"), or ''."""
    try:
        bus_id = (card / "device").resolve().name.lower()
        for info in Path("/proc/driver/nvidia/gpus").glob("*/information"):
            if info.parent.name.lower().endswith(bus_id.split(":", 1)[-1]):
                for line in info.read_text(encoding="utf-8", errors="replace").splitlines():
                    if line.startswith("Model:"):
                        return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def torch_gpu_backends() -> tuple[str, ...]:
    """GPU backends the installed torch was built with, read without importing torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return ()
    if sys.platform == "darwin":
        return ("mps",) if platform.machine() == "arm64" else ()
    version_file = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        text = version_file.read_text(encoding="utf-8")
    except OSError:
        return ()
    found = []
    for backend, key in (("cuda", "cuda"), ("rocm", "hip"), ("xpu", "xpu")):
        if re.search(rf"^{key}\s*(:[^=]*)?=\s*['\"]", text, re.MULTILINE):
            found.append(backend)
    return tuple(found)


def probe_gpus_in_subprocess(timeout_s: float = GPU_PROBE_TIMEOUT_S) -> tuple[tuple[GpuDevice, ...], str]:
    """GPUs as torch sees them, asked in a child process; returns (gpus, note about a failure)."""
    command = [sys.executable, "-m", "inference.gpu_probe"]
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=root)
        rows = json.loads(result.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        return (), f"Looking for GPUs took over {timeout_s:.0f} s and was abandoned."
    except (OSError, ValueError, IndexError) as exc:
        log.warning("GPU probe failed: %s", exc)
        return (), "Looking for GPUs failed; see the log."
    return tuple(GpuDevice(**row) for row in rows), ""


def llama_supports_gpu_offload() -> bool:
    """Whether the installed llama-cpp-python was built with a GPU backend (CUDA, Metal, Vulkan…)."""
    try:
        import llama_cpp
    except ImportError:
        return False
    return bool(llama_cpp.llama_supports_gpu_offload())
