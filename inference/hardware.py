"""What this computer can run models on: CPU, memory and GPUs.

Cheap facts (cores, instruction sets, RAM) are read directly. GPUs are asked
of llama.cpp (when its build has a GPU backend library) and of torch (when
the installed torch was built with a GPU backend, read from
``torch/version.py`` without importing torch), in a separate short-lived
process (``inference/gpu_probe.py``): importing torch costs 1-2 s and
initialising a GPU driver can hang or crash, neither of which may touch the app.
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
    """One GPU and its memory, as torch or llama.cpp reports it."""

    backend: str  # torch: "cuda", "rocm", "mps" or "xpu"; llama.cpp: its backend's name ("CUDA", "Vulkan"…)
    index: int  # torch's device number, or llama.cpp's main_gpu number
    name: str
    total_bytes: int
    free_bytes: int
    integrated: bool = False  # shares the system's memory (an APU's or a laptop's built-in GPU)

    @property
    def key(self) -> str:
        """What Settings stores to name this GPU: its name and number, e.g. ``NVIDIA H200#0``."""
        return f"{self.name}#{self.index}"

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
    gpus: tuple[GpuDevice, ...] = ()  # what torch can use
    llama_gpu_offload: bool = False
    llama_gpus: tuple[GpuDevice, ...] = ()  # what llama.cpp can offload to, numbered as its main_gpu counts
    torch_gpu_backends: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    # GPUs the operating system reports that no installed engine can use (e.g. "NVIDIA H200").
    unusable_gpus: tuple[str, ...] = ()
    # What the source install said about the engine it built, e.g. "No CUDA compiler found: CPU only; …".
    engine_build_note: str = ""


def probe_hardware() -> Hardware:
    """Look at this machine. Slow parts (torch) run in a subprocess; never raises."""
    import psutil

    memory = psutil.virtual_memory()
    backends = torch_gpu_backends()
    probed = GpuProbe()
    notes: list[str] = []
    llama_gpu_build = llama_has_gpu_backend()
    if backends or llama_gpu_build:
        probed, note = probe_gpus_in_subprocess()
        if note:
            notes.append(note)
    return Hardware(
        cpu=CpuFacts.probe(),
        ram_total_bytes=memory.total,
        ram_available_bytes=memory.available,
        gpus=probed.torch,
        llama_gpu_offload=bool(probed.llama),
        llama_gpus=probed.llama,
        torch_gpu_backends=backends,
        notes=tuple(notes),
        unusable_gpus=() if probed.torch or probed.llama else system_gpu_names(),
        engine_build_note=engine_build_note(),
    )


def engine_build_note(environment: Path = Path(sys.prefix)) -> str:
    """The sentence ``packaging/bootstrap.py`` stamped on this environment about the engine it built, or ''."""
    try:
        stamp = json.loads((environment / "hearth-install.json").read_text(encoding="utf-8"))
        return str(stamp.get("engine_backend_reason", "")) if isinstance(stamp, dict) else ""
    except (OSError, ValueError):
        return ""


@dataclass(frozen=True)
class GpuProbe:
    """The GPUs each engine can use, as the probe process found them."""

    torch: tuple[GpuDevice, ...] = ()
    llama: tuple[GpuDevice, ...] = ()


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


def probe_gpus_in_subprocess(timeout_s: float = GPU_PROBE_TIMEOUT_S) -> tuple[GpuProbe, str]:
    """GPUs as llama.cpp and torch see them, asked in a child process; returns them and a note about a failure."""
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    try:
        result = subprocess.run(gpu_probe_command(), capture_output=True, text=True, timeout=timeout_s, env=env,
                                cwd=root)
        found = json.loads(result.stdout.strip().splitlines()[-1])
        probe = GpuProbe(torch=tuple(GpuDevice(**row) for row in found["torch"]),
                         llama=tuple(GpuDevice(**row) for row in found["llama"]))
    except subprocess.TimeoutExpired:
        return GpuProbe(), f"Looking for GPUs took over {timeout_s:.0f} s and was abandoned."
    except (OSError, ValueError, IndexError, KeyError, TypeError) as exc:
        log.warning("GPU probe failed: %s", exc)
        return GpuProbe(), "Looking for GPUs failed; see the log."
    for note in found.get("notes", []):
        log.warning("GPU probe: %s", note)
    return probe, ""


def gpu_probe_command() -> list[str]:
    """How to start the GPU probe: the module from source, the app itself with ``--probe-gpus`` when frozen."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "--probe-gpus"]
    return [sys.executable, "-m", "inference.gpu_probe"]


def llama_has_gpu_backend() -> bool:
    """Whether the installed llama.cpp can use a GPU: a GPU backend library beside it, or one built in."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return False
    from inference.gpu_backends import gpu_backend_files

    folder = Path(os.environ.get("LLAMA_CPP_LIB_PATH") or Path(next(iter(spec.submodule_search_locations))) / "lib")
    if gpu_backend_files(folder):
        return True
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())
