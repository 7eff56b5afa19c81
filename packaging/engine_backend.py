"""Which GPU backend the source install builds llama.cpp with, and why.

:func:`choose` decides from :class:`Facts` (the platform, the GPUs seen, the
compilers found) and returns a :class:`Choice` that carries its sentence;
tests hand it made-up machines. :func:`gather_facts` reads the facts off this
machine. Standard library only: ``bootstrap.py`` runs this before anything is
installed. Preference: CUDA, ROCm, Metal, Vulkan, then the CPU alone; the GPU
flags come on top of the CPU ones, never instead of them.

With ``GGML_BACKEND_DL`` (the x86-64 builds) llama.cpp's CMake makes each GPU
backend a loadable module beside the CPU variants, installed into
``llama_cpp/lib``: ``libggml-cuda.so``, ``libggml-hip.so``, ``libggml-vulkan.so``
(``ggml-cuda.dll`` … on Windows), which ``ggml_backend_load_all_from_path``
finds. Without it (arm64: Apple silicon, arm64 Linux) the GPU backend is an
ordinary shared library linked into libggml and registered at start-up.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

GPU_BACKENDS = ("cuda", "rocm", "metal", "vulkan")  # in order of preference
CHOICES = ("cpu", *GPU_BACKENDS)
NO_GPU = "No GPU found: building the CPU engine."
# PCI vendor ids in /sys/class/drm/card*/device/vendor (NVIDIA's GPUs are counted by its driver instead).
AMD, INTEL = "0x1002", "0x8086"


@dataclass(frozen=True)
class Facts:
    """What the choice depends on; every field has a "nothing found" default.

    Attributes:
        system: ``platform.system()``: "Linux", "Darwin", "Windows".
        machine: ``platform.machine()`` in lower case: "x86_64", "arm64" …
        nvidia_gpus: the GPUs the NVIDIA driver reports, by name; empty without a driver.
        compute_caps: their compute capabilities as nvidia-smi prints them ("9.0"); empty when unknown.
        amd_gpus: AMD GPUs seen (PCI vendor 0x1002, or the ROCm kernel driver's /dev/kfd).
        intel_gpus: Intel GPUs seen (PCI vendor 0x8086).
        apple_chip: the Mac's chip ("Apple M2 Pro"); empty elsewhere.
        nvcc: path of the CUDA compiler; empty when none was found.
        nvcc_on_path: whether that nvcc is the one on PATH (else CMake must be told where it is).
        nvcc_version: its release ("13.0"); empty when unknown.
        cmake_version: the cmake on PATH, e.g. (3, 25); empty when there is none (the build then gets a
            current one from PyPI).
        hip: path of hipcc or hipconfig, links resolved; empty when ROCm was not found.
        glslc: path of the Vulkan shader compiler; empty when not found.
        vulkan_headers: whether the Vulkan headers and loader are installed (pkg-config, VULKAN_SDK or vulkan.h).
    """

    system: str
    machine: str
    nvidia_gpus: tuple[str, ...] = ()
    compute_caps: tuple[str, ...] = ()
    amd_gpus: tuple[str, ...] = ()
    intel_gpus: tuple[str, ...] = ()
    apple_chip: str = ""
    nvcc: str = ""
    nvcc_on_path: bool = True
    nvcc_version: str = ""
    cmake_version: tuple[int, ...] = ()
    hip: str = ""
    glslc: str = ""
    vulkan_headers: bool = False


@dataclass(frozen=True)
class Choice:
    """The backend to build, the CMake flags it adds to the CPU ones, and the sentence that says why.

    ``toolchain`` names the compiler that matters ("nvcc 13.0"): part of the wheel cache key,
    so a wheel built against one CUDA release is not reused after an upgrade to another.
    """

    backend: str
    flags: tuple[str, ...] = ()
    reason: str = NO_GPU
    toolchain: str = ""


def parse_override(text: str | None) -> str:
    """The backend ``HEARTH_GPU_BACKEND`` names, or "" for "detect it".

    Raises:
        ValueError: the text names no backend Hearth knows.
    """
    value = (text or "").strip().lower()
    if value in ("", "auto"):
        return ""
    if value not in CHOICES:
        raise ValueError(f"HEARTH_GPU_BACKEND={text!r}: choose one of {', '.join(CHOICES)} (or leave it unset).")
    return value


def choose(facts: Facts, override: str = "") -> Choice:
    """The best backend these facts allow; ``override`` (see :func:`parse_override`) tries that one only.

    Detection wants a GPU and its toolchain; an override needs only the toolchain.
    Without one the choice is the CPU, with the first reason a GPU went unused.
    """
    if override == "cpu":
        return Choice("cpu", reason="HEARTH_GPU_BACKEND=cpu: building the CPU engine only.")
    reasons = []
    for backend in [override] if override else GPU_BACKENDS:
        choice = _CHECKS[backend](facts, bool(override))
        if choice.backend != "cpu":
            return choice
        if choice.reason:
            reasons.append(choice.reason)
    return Choice("cpu", reason=reasons[0] if reasons else NO_GPU)


# Each check below: the backend's Choice, or a CPU one whose reason says why not ("" when there is no GPU for it).
def _cuda(facts: Facts, forced: bool) -> Choice:
    gpus = describe(facts.nvidia_gpus)
    if not gpus and not forced:
        return Choice("cpu", reason="")
    if not facts.nvcc:
        if forced:
            return Choice("cpu", reason="HEARTH_GPU_BACKEND=cuda, but no CUDA compiler (nvcc) was found: CPU only.")
        return Choice("cpu", reason=f"No CUDA compiler found: CPU only; install the CUDA toolkit to use your {gpus}.")
    flags = ["-DGGML_CUDA=ON", *cuda_architectures(facts)]
    if not facts.nvcc_on_path:
        nvcc = Path(facts.nvcc)
        # CMake's FindCUDAToolkit looks on PATH and in /usr/local/cuda, not beside CMAKE_CUDA_COMPILER: name both.
        flags += [f"-DCMAKE_CUDA_COMPILER={nvcc.as_posix()}", f"-DCUDAToolkit_ROOT={nvcc.parent.parent.as_posix()}"]
    toolchain = f"nvcc {facts.nvcc_version}" if facts.nvcc_version else "nvcc"
    if gpus:
        reason = f"Building llama.cpp with CUDA for your {gpus} ({toolchain} found)."
    else:
        reason = ("HEARTH_GPU_BACKEND=cuda: building llama.cpp with CUDA for the common NVIDIA GPUs "
                  f"({toolchain} found).")
    return Choice("cuda", tuple(flags), reason, toolchain)


def cuda_architectures(facts: Facts) -> list[str]:
    """The ``CMAKE_CUDA_ARCHITECTURES`` flag for these GPUs; none means llama.cpp's own list of common ones.

    The compute capabilities nvidia-smi reports ("9.0" -> 90) come first: they work with
    any CMake, need no GPU probe at configure time, and put the architecture into the
    wheel cache key, so another GPU gets its own build. "native" (CMake 3.24+) is the
    fallback for drivers too old to report them.
    """
    caps = sorted({cap.replace(".", "") for cap in facts.compute_caps if re.fullmatch(r"\d+\.\d", cap)}, key=int)
    if caps:
        return [f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(caps)}"]
    if facts.nvidia_gpus and (not facts.cmake_version or facts.cmake_version >= (3, 24)):
        return ["-DCMAKE_CUDA_ARCHITECTURES=native"]
    return []


def _rocm(facts: Facts, forced: bool) -> Choice:
    gpus = describe(facts.amd_gpus)
    if not gpus and not forced:
        return Choice("cpu", reason="")
    if not facts.hip:
        if forced:
            return Choice("cpu", reason="HEARTH_GPU_BACKEND=rocm, but no ROCm compiler (hipcc) was found: CPU only.")
        return Choice("cpu", reason=f"No ROCm compiler (hipcc) found: CPU only; install ROCm to use your {gpus}.")
    tool = Path(facts.hip).name
    reason = (f"Building llama.cpp with ROCm for your {gpus} ({tool} found)." if gpus
              else f"HEARTH_GPU_BACKEND=rocm: building llama.cpp with ROCm ({tool} found, no AMD GPU seen).")
    return Choice("rocm", ("-DGGML_HIP=ON",), reason, facts.hip)


def _metal(facts: Facts, forced: bool) -> Choice:
    if facts.system != "Darwin" or facts.machine != "arm64":
        return Choice("cpu", reason="HEARTH_GPU_BACKEND=metal, but Metal needs a Mac with Apple silicon: CPU only."
                      if forced else "")
    chip = facts.apple_chip or "Apple silicon"
    reason = (f"Building llama.cpp with Metal for your {chip} "
              "(llama.cpp's default on Apple silicon, asked for explicitly).")
    return Choice("metal", ("-DGGML_METAL=ON",), reason)


def _vulkan(facts: Facts, forced: bool) -> Choice:
    gpus = describe(facts.nvidia_gpus + facts.amd_gpus + facts.intel_gpus)
    if not gpus and not forced:
        return Choice("cpu", reason="")
    if not (facts.glslc and facts.vulkan_headers):
        if forced:
            return Choice("cpu", reason="HEARTH_GPU_BACKEND=vulkan, but the Vulkan SDK (glslc and the Vulkan headers) "
                                        "was not found: CPU only.")
        return Choice("cpu", reason="No Vulkan SDK (glslc and the Vulkan headers) found: CPU only; install it to use "
                                    f"your {gpus}.")
    reason = (f"Building llama.cpp with Vulkan for your {gpus} (glslc and the Vulkan headers found)." if gpus
              else "HEARTH_GPU_BACKEND=vulkan: building llama.cpp with Vulkan (glslc and the Vulkan headers found).")
    return Choice("vulkan", ("-DGGML_VULKAN=ON",), reason)  # the Vulkan loader's ABI does not move


_CHECKS = {"cuda": _cuda, "rocm": _rocm, "metal": _metal, "vulkan": _vulkan}


def describe(names: tuple[str, ...]) -> str:
    """GPU names for a sentence: "NVIDIA H200", "2 × NVIDIA H200", "AMD GPU and Intel GPU"; "" for none."""
    return " and ".join(name if count == 1 else f"{count} × {name}" for name, count in Counter(names).items())


def gather_facts(override: str = "") -> Facts:
    """The facts of this machine; with an override only those that backend needs (none for "cpu")."""
    facts = {"system": platform.system(), "machine": platform.machine().lower()}
    if override == "cpu":
        return Facts(**facts)

    def wants(backend: str) -> bool:
        return override in ("", backend)

    vendors = _pci_vendors()
    if wants("cuda") or wants("vulkan"):
        facts["nvidia_gpus"], facts["compute_caps"] = _nvidia_gpus()
    if wants("cuda"):
        nvcc, on_path = _find_nvcc()
        facts.update(nvcc=nvcc, nvcc_on_path=on_path)
        if nvcc and (facts["nvidia_gpus"] or override):
            facts["nvcc_version"] = nvcc_release(_output([nvcc, "--version"]))
            if not facts["compute_caps"]:  # then "native" may be the architecture, which needs CMake 3.24
                cmake = _output(["cmake", "--version"]) if shutil.which("cmake") else ""
                match = re.search(r"version (\d+)\.(\d+)", cmake)
                facts["cmake_version"] = (int(match.group(1)), int(match.group(2))) if match else ()
    if wants("rocm") or wants("vulkan"):
        kfd = Path("/dev/kfd").exists()  # the ROCm kernel driver: there is an AMD GPU it can use
        facts["amd_gpus"] = ("AMD GPU",) * max(vendors.count(AMD), int(kfd))
    if wants("rocm"):
        rocm = Path(os.environ.get("ROCM_PATH") or "/opt/rocm") / "bin"
        hip = next((found for name in ("hipcc", "hipconfig")
                    for found in (shutil.which(name), shutil.which(name, path=str(rocm))) if found), "")
        facts["hip"] = os.path.realpath(hip) if hip else ""  # /opt/rocm-6.2.0/…: the release, for the cache key
    if wants("metal") and facts["system"] == "Darwin":
        facts["apple_chip"] = _output(["sysctl", "-n", "machdep.cpu.brand_string"]).strip()
    if wants("vulkan"):
        facts["intel_gpus"] = ("Intel GPU",) * vendors.count(INTEL)
        facts["glslc"] = shutil.which("glslc") or ""
        facts["vulkan_headers"] = bool(facts["glslc"]) and _vulkan_headers()
    return Facts(**facts)


def nvcc_release(text: str) -> str:
    """The release in ``nvcc --version``'s text ("Cuda compilation tools, release 13.0, V13.0.88" -> "13.0")."""
    match = re.search(r"release (\d+\.\d+)", text)
    return match.group(1) if match else ""


def nvidia_smi_gpus(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names and compute capabilities from ``nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader``.

    A line without a capability (a driver too old to know the field) leaves the capabilities empty.
    """
    rows = [line.rsplit(",", 1) if "," in line else [line] for line in text.splitlines() if line.strip()]
    names = tuple(row[0].strip() for row in rows)
    caps = tuple(row[1].strip() for row in rows if len(row) == 2)
    return names, caps if len(caps) == len(names) else ()


def _nvidia_gpus() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """GPU names and compute capabilities from the NVIDIA driver; empty without one."""
    if shutil.which("nvidia-smi"):
        found = nvidia_smi_gpus(_output(["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"]))
        if not found[0]:  # a driver too old for compute_cap refuses the whole query
            found = nvidia_smi_gpus(_output(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]))
        if found[0]:
            return found
    driver = Path("/proc/driver/nvidia")
    names = []
    for information in sorted(driver.glob("gpus/*/information")):
        match = re.search(r"^Model:\s*(.+)$", _read(information), re.MULTILINE)
        names.append(match.group(1).strip() if match else "NVIDIA GPU")
    if not names and (driver / "version").exists():
        names = ["NVIDIA GPU"]
    return tuple(names), ()


def _find_nvcc() -> tuple[str, bool]:
    """nvcc on PATH, else in $CUDA_HOME/bin, $CUDA_PATH/bin or /usr/local/cuda/bin; and whether it came from PATH."""
    found = shutil.which("nvcc")
    if found:
        return found, True
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        found = shutil.which("nvcc", path=str(Path(root) / "bin")) if root else None
        if found:
            return found, False
    return "", True


def _pci_vendors() -> list[str]:
    """The PCI vendor id of each display device Linux lists (one entry per card)."""
    vendors = []
    for card in sorted(Path("/sys/class/drm").glob("card[0-9]*")):
        if "-" not in card.name:  # card0-HDMI-A-1 and the like are connectors of card0
            vendors.append(_read(card / "device" / "vendor").strip().lower())
    return vendors


def _vulkan_headers() -> bool:
    if os.environ.get("VULKAN_SDK") and Path(os.environ["VULKAN_SDK"]).is_dir():
        return True
    if shutil.which("pkg-config") and _output(["pkg-config", "--exists", "vulkan"], check_only=True):
        return True
    return Path("/usr/include/vulkan/vulkan.h").exists()


def _output(command: list[str], *, check_only: bool = False) -> str:
    """What the command prints ("ok" with ``check_only``); "" when it fails or cannot run."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    if result.returncode != 0:
        return ""
    return "ok" if check_only else result.stdout


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
