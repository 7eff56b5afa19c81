"""Which llama.cpp backend the source install builds, and what happens when that build fails.

The choice is a pure function of facts (packaging/engine_backend.py), so the
tests hand it made-up machines; one test runs the real fact gatherer on this
one. The build step is passed in, so the fallback is checked with a real
failing command in seconds, never by compiling llama.cpp (20 minutes); every
test's wheel cache is a tmp folder.
"""

from __future__ import annotations

import importlib.util
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging"))
import bootstrap  # noqa: E402
import engine_backend  # noqa: E402
from engine_backend import NO_GPU, Choice, Facts, choose  # noqa: E402

# Today's CPU flag sets, written out: they are the wheel cache key of every existing CPU install.
VARIANTS = ["-DGGML_NATIVE=OFF", "-DLLAVA_BUILD=OFF", "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON",
            "-DCMAKE_INSTALL_BINDIR=llama_cpp/lib"]
PORTABLE_AVX2 = ["-DGGML_NATIVE=OFF", "-DLLAVA_BUILD=OFF", "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF",
                 "-DGGML_AMX_BF16=OFF", "-DGGML_AVX=ON", "-DGGML_AVX2=ON", "-DGGML_FMA=ON", "-DGGML_F16C=ON",
                 "-DGGML_AVX512=OFF"]
PORTABLE_AVX = [*PORTABLE_AVX2[:5], "-DGGML_AVX=ON", "-DGGML_AVX2=OFF", "-DGGML_FMA=OFF", "-DGGML_F16C=OFF",
                "-DGGML_AVX512=OFF"]
PORTABLE_ARM = PORTABLE_AVX2[:5]
VARIANTS_KEY = "3ac7cae35840"  # the folder name's hash of VARIANTS, as every CPU install made it so far
WHEEL_NAME = "llama_cpp_python-0.3.36-py3-none-linux_x86_64.whl"

LINUX = Facts(system="Linux", machine="x86_64")
H200 = replace(LINUX, nvidia_gpus=("NVIDIA H200",), compute_caps=("9.0",), nvcc="/usr/local/cuda/bin/nvcc",
               nvcc_version="13.0")
RTX_4070_NO_TOOLKIT = replace(LINUX, nvidia_gpus=("NVIDIA GeForce RTX 4070",), compute_caps=("8.9",))
RADEON = replace(LINUX, amd_gpus=("AMD GPU",), hip="/opt/rocm/bin/hipcc")
VULKAN_SDK = {"glslc": "/usr/bin/glslc", "vulkan_headers": True}
APPLE_M2 = Facts(system="Darwin", machine="arm64", apple_chip="Apple M2 Pro")


@pytest.fixture(autouse=True)
def _wheel_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's wheel cache is its own tmp folder: the real cached wheel is never touched."""
    cache = tmp_path / "wheels"
    monkeypatch.setenv("HEARTH_WHEEL_CACHE", str(cache))
    return cache


# The CPU builds stay exactly what they were.

def test_cpu_flag_sets_are_byte_for_byte_todays() -> None:
    assert bootstrap.cpu_flag_sets("x86_64", {"avx", "avx2", "fma", "f16c", "sse4_2"}) == [VARIANTS, PORTABLE_AVX2]
    assert bootstrap.cpu_flag_sets("AMD64", set()) == [VARIANTS, PORTABLE_AVX2]  # unknown CPU: a post-2013 one
    assert bootstrap.cpu_flag_sets("x86_64", {"avx", "sse4_2"}) == [VARIANTS, PORTABLE_AVX]
    assert bootstrap.cpu_flag_sets("aarch64", set()) == [PORTABLE_ARM]
    assert bootstrap.cpu_flag_sets("arm64", {"neon"}) == [PORTABLE_ARM]
    assert bootstrap.build_flag_sets() == bootstrap.cpu_flag_sets(platform.machine(), bootstrap.cpu_features())


def test_a_cpu_choice_keeps_the_wheel_cache_key_and_the_fingerprinted_flags() -> None:
    cpu = [VARIANTS, PORTABLE_AVX2]
    builds = bootstrap.engine_builds(Choice("cpu"), cpu)
    assert builds == [bootstrap.Build("cpu", VARIANTS), bootstrap.Build("cpu", PORTABLE_AVX2)]
    assert bootstrap.wheel_cache_folder(builds[0].flags).name.endswith(f"-{VARIANTS_KEY}")
    assert bootstrap.cmake_args(VARIANTS) == " ".join(VARIANTS)  # what CMAKE_ARGS has always been
    assert bootstrap.cmake_args(PORTABLE_AVX2) == " ".join(PORTABLE_AVX2)
    assert repr([build.flags for build in builds]) == repr(cpu)  # the fingerprint sees the same lists as before


def test_gpu_flags_come_on_top_of_the_best_cpu_set_and_the_cpu_builds_stay_behind_it() -> None:
    cuda = choose(H200)
    builds = bootstrap.engine_builds(cuda, [VARIANTS, PORTABLE_AVX2])
    assert builds == [bootstrap.Build("cuda", [*VARIANTS, *cuda.flags], "nvcc 13.0"),
                      bootstrap.Build("cpu", VARIANTS), bootstrap.Build("cpu", PORTABLE_AVX2)]
    arm = bootstrap.engine_builds(choose(APPLE_M2), [PORTABLE_ARM])
    assert arm == [bootstrap.Build("metal", [*PORTABLE_ARM, "-DGGML_METAL=ON"]), bootstrap.Build("cpu", PORTABLE_ARM)]
    gpu_key = bootstrap.wheel_cache_folder(builds[0].flags, builds[0].toolchain)
    assert gpu_key != bootstrap.wheel_cache_folder(VARIANTS)
    assert gpu_key != bootstrap.wheel_cache_folder(builds[0].flags, "nvcc 12.8")  # another CUDA: another wheel


def test_cmake_args_survive_a_path_with_a_space() -> None:
    flags = [*VARIANTS, "-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=86;89",
             "-DCMAKE_CUDA_COMPILER=C:/Program Files/NVIDIA GPU Computing Toolkit/CUDA/v13.0/bin/nvcc.exe"]
    assert shlex.split(bootstrap.cmake_args(flags)) == flags


# The choice, one made-up machine at a time.

@pytest.mark.parametrize(("facts", "backend", "flags"), [
    (H200, "cuda", ("-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=90")),
    (replace(H200, nvidia_gpus=("NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 3090"),
             compute_caps=("8.6", "8.9", "8.6")), "cuda", ("-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=86;89")),
    (replace(H200, compute_caps=(), cmake_version=(3, 28)), "cuda",
     ("-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=native")),
    (replace(H200, compute_caps=()), "cuda", ("-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=native")),  # pip's cmake
    (replace(H200, compute_caps=(), cmake_version=(3, 22)), "cuda", ("-DGGML_CUDA=ON",)),  # too old for "native"
    (replace(H200, nvcc="/opt/cuda-13.0/bin/nvcc", nvcc_on_path=False), "cuda",
     ("-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=90", "-DCMAKE_CUDA_COMPILER=/opt/cuda-13.0/bin/nvcc",
      "-DCUDAToolkit_ROOT=/opt/cuda-13.0")),
    (replace(H200, machine="aarch64"), "cuda", ("-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=90")),
    (replace(H200, nvidia_gpus=(), compute_caps=()), "cpu", ()),  # a CUDA toolkit without a driver, like this machine
    (RTX_4070_NO_TOOLKIT, "cpu", ()),
    (replace(RTX_4070_NO_TOOLKIT, **VULKAN_SDK), "vulkan", ("-DGGML_VULKAN=ON",)),
    (replace(H200, **VULKAN_SDK, amd_gpus=RADEON.amd_gpus, hip=RADEON.hip), "cuda",
     ("-DGGML_CUDA=ON", "-DCMAKE_CUDA_ARCHITECTURES=90")),  # CUDA before ROCm before Vulkan
    (RADEON, "rocm", ("-DGGML_HIP=ON",)),
    (replace(RADEON, hip=""), "cpu", ()),
    (replace(RADEON, hip="", **VULKAN_SDK), "vulkan", ("-DGGML_VULKAN=ON",)),
    (replace(LINUX, hip="/opt/rocm/bin/hipcc"), "cpu", ()),  # ROCm installed, no AMD GPU
    (APPLE_M2, "metal", ("-DGGML_METAL=ON",)),
    (replace(APPLE_M2, machine="x86_64"), "cpu", ()),  # an Intel Mac
    (replace(LINUX, intel_gpus=("Intel GPU",), **VULKAN_SDK), "vulkan", ("-DGGML_VULKAN=ON",)),
    (replace(LINUX, intel_gpus=("Intel GPU",), glslc="/usr/bin/glslc"), "cpu", ()),  # glslc without the headers
    (replace(LINUX, **VULKAN_SDK), "cpu", ()),  # a Vulkan SDK and no GPU
    (LINUX, "cpu", ()),
])
def test_each_toolchain_combination(facts: Facts, backend: str, flags: tuple[str, ...]) -> None:
    choice = choose(facts)
    assert (choice.backend, choice.flags) == (backend, flags)
    assert choice.reason.endswith(".") and "\n" not in choice.reason


def test_the_sentence_names_the_gpu_and_the_compiler() -> None:
    assert choose(H200).reason == "Building llama.cpp with CUDA for your NVIDIA H200 (nvcc 13.0 found)."
    assert choose(replace(H200, nvidia_gpus=("NVIDIA H200",) * 2)).reason == (
        "Building llama.cpp with CUDA for your 2 × NVIDIA H200 (nvcc 13.0 found).")
    assert choose(RTX_4070_NO_TOOLKIT).reason == (
        "No CUDA compiler found: CPU only; install the CUDA toolkit to use your NVIDIA GeForce RTX 4070.")
    assert choose(replace(RTX_4070_NO_TOOLKIT, **VULKAN_SDK)).reason == (
        "Building llama.cpp with Vulkan for your NVIDIA GeForce RTX 4070 (glslc and the Vulkan headers found).")
    assert choose(RADEON).reason == "Building llama.cpp with ROCm for your AMD GPU (hipcc found)."
    assert choose(replace(RADEON, hip="")).reason == (
        "No ROCm compiler (hipcc) found: CPU only; install ROCm to use your AMD GPU.")
    assert choose(APPLE_M2).reason == ("Building llama.cpp with Metal for your Apple M2 Pro "
                                       "(llama.cpp's default on Apple silicon, asked for explicitly).")
    assert choose(replace(LINUX, intel_gpus=("Intel GPU",))).reason == (
        "No Vulkan SDK (glslc and the Vulkan headers) found: CPU only; install it to use your Intel GPU.")
    assert choose(LINUX).reason == NO_GPU == "No GPU found: building the CPU engine."
    assert choose(replace(H200, nvidia_gpus=(), compute_caps=())).reason == NO_GPU


# HEARTH_GPU_BACKEND.

def test_the_override_is_parsed_strictly() -> None:
    assert [engine_backend.parse_override(text) for text in (None, "", " auto ", "CUDA", "cpu", "Vulkan")] == [
        "", "", "", "cuda", "cpu", "vulkan"]
    with pytest.raises(ValueError, match="HEARTH_GPU_BACKEND='opencl': choose one of cpu, cuda, rocm, metal, vulkan"):
        engine_backend.parse_override("opencl")
    with pytest.raises(SystemExit, match="choose one of"):
        bootstrap.engine_choice("opencl")


def test_cpu_forces_the_cpu_build_and_gathers_nothing() -> None:
    everything = replace(H200, **VULKAN_SDK, amd_gpus=("AMD GPU",), hip="/opt/rocm/bin/hipcc")
    assert choose(everything, "cpu") == Choice("cpu", (), "HEARTH_GPU_BACKEND=cpu: building the CPU engine only.")
    assert engine_backend.gather_facts("cpu") == Facts(system=platform.system(), machine=platform.machine().lower())
    assert bootstrap.engine_choice("cpu").backend == "cpu"


def test_naming_a_backend_skips_the_others_but_still_needs_its_toolchain() -> None:
    both = replace(H200, **VULKAN_SDK)
    assert choose(both, "vulkan").backend == "vulkan"
    assert choose(RTX_4070_NO_TOOLKIT, "cuda").reason == (
        "HEARTH_GPU_BACKEND=cuda, but no CUDA compiler (nvcc) was found: CPU only.")
    assert choose(replace(RTX_4070_NO_TOOLKIT, **VULKAN_SDK), "cuda").backend == "cpu"  # not Vulkan instead
    no_driver = choose(replace(H200, nvidia_gpus=(), compute_caps=()), "cuda")
    assert no_driver.flags == ("-DGGML_CUDA=ON",)  # no GPU to name an architecture: llama.cpp's common list
    assert no_driver.reason == ("HEARTH_GPU_BACKEND=cuda: building llama.cpp with CUDA for the common NVIDIA GPUs "
                                "(nvcc 13.0 found).")
    assert choose(LINUX, "metal").reason == (
        "HEARTH_GPU_BACKEND=metal, but Metal needs a Mac with Apple silicon: CPU only.")
    assert choose(LINUX, "rocm").backend == choose(LINUX, "vulkan").backend == "cpu"
    assert choose(replace(LINUX, hip="/opt/rocm/bin/hipcc"), "rocm").backend == "rocm"


# This very machine.

def test_the_real_fact_gatherer_reads_this_machine() -> None:
    started = time.monotonic()
    facts = engine_backend.gather_facts()
    assert time.monotonic() - started < 5  # it runs on every start of bootstrap.py
    driver = shutil.which("nvidia-smi") or Path("/proc/driver/nvidia/version").exists()
    if not driver:
        assert facts.nvidia_gpus == ()
    if shutil.which("nvcc"):
        assert (facts.nvcc, facts.nvcc_on_path) == (shutil.which("nvcc"), True)
    assert facts.system == platform.system()
    choice = bootstrap.engine_choice(None)
    assert choice == choose(facts)
    if not (facts.nvidia_gpus or facts.amd_gpus or facts.intel_gpus or facts.apple_chip):
        assert choice == Choice("cpu", (), NO_GPU)  # here: an EPYC VM with nvcc but no GPU and no driver


def test_what_nvidia_smi_and_nvcc_print_is_read() -> None:
    assert engine_backend.nvidia_smi_gpus("NVIDIA H200, 9.0\nNVIDIA GeForce RTX 4070, 8.9\n") == (
        ("NVIDIA H200", "NVIDIA GeForce RTX 4070"), ("9.0", "8.9"))
    assert engine_backend.nvidia_smi_gpus("Tesla K80\n") == (("Tesla K80",), ())
    assert engine_backend.nvidia_smi_gpus("") == ((), ())
    assert engine_backend.nvcc_release("Cuda compilation tools, release 13.0, V13.0.88\n") == "13.0"
    nvcc = shutil.which("nvcc")
    if nvcc:  # this machine has a CUDA compiler (and no GPU): read its real answer
        text = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
        release = engine_backend.nvcc_release(text)
        assert release and f"release {release}," in text


def test_bootstrap_finds_its_helper_from_any_folder(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "packaging" / "bootstrap.py"), "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    spec = importlib.util.spec_from_file_location("bootstrap_by_path", REPO / "packaging" / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # as the packaging tests load scripts
    assert module.engine_backend is engine_backend


# The fallback: a failed GPU build ends with the CPU wheel, never with no engine.

class Builder:
    """The build step: a real command per build (the GPU one fails), or a wheel file written for it."""

    def __init__(self, *, fail: tuple[str, ...] = ()) -> None:
        self.fail = fail
        self.calls: list[list[str]] = []

    def __call__(self, flags: list[str], folder: Path) -> bool:
        self.calls.append(flags)
        if any(flag in flags for flag in self.fail):
            return subprocess.run([sys.executable, "-c", "raise SystemExit(1)"], timeout=60).returncode == 0
        folder.mkdir(parents=True, exist_ok=True)
        (folder / WHEEL_NAME).write_bytes(b"a wheel")
        return True


def cached_cpu_wheel() -> Path:
    folder = bootstrap.wheel_cache_folder(VARIANTS)
    folder.mkdir(parents=True)
    wheel = folder / WHEEL_NAME
    wheel.write_bytes(b"the CPU wheel built earlier")
    return wheel


def test_a_failed_gpu_build_falls_back_to_the_cached_cpu_wheel_and_is_not_retried(
        capsys: pytest.CaptureFixture[str]) -> None:
    cpu_wheel = cached_cpu_wheel()
    builds = bootstrap.engine_builds(choose(H200), [VARIANTS, PORTABLE_AVX2])
    builder = Builder(fail=("-DGGML_CUDA=ON",))
    assert bootstrap.llama_cpp_wheel(builds, build=builder) == (cpu_wheel, "cpu")
    assert builder.calls == [builds[0].flags]  # the GPU build was tried; the CPU one came from the cache
    said = capsys.readouterr().out
    assert "[hearth] Compiling the CUDA engine once" in said
    assert "[hearth] The CUDA build failed (its messages are above): building the CPU engine instead." in said
    assert bootstrap.llama_cpp_wheel(builds, build=builder) == (cpu_wheel, "cpu")
    assert len(builder.calls) == 1
    assert "The CUDA build failed on an earlier install: CPU only (delete " in capsys.readouterr().out
    assert bootstrap.engine_stamp(choose(H200), "cpu") == {
        "engine_backend": "cpu", "engine_backend_reason": "The CUDA build failed: CPU only."}


def test_a_failed_gpu_build_with_nothing_cached_builds_the_cpu_engine() -> None:
    builds = bootstrap.engine_builds(choose(RADEON), [VARIANTS, PORTABLE_AVX2])
    builder = Builder(fail=("-DGGML_HIP=ON",))
    wheel, backend = bootstrap.llama_cpp_wheel(builds, build=builder)
    assert (wheel.parent, backend) == (bootstrap.wheel_cache_folder(VARIANTS), "cpu")
    assert builder.calls == [builds[0].flags, VARIANTS]


def test_a_gpu_build_that_works_is_kept_and_found_next_time() -> None:
    cached_cpu_wheel()  # an existing CPU install does not stop the GPU build
    choice = choose(H200)
    builds = bootstrap.engine_builds(choice, [VARIANTS, PORTABLE_AVX2])
    builder = Builder()
    wheel, backend = bootstrap.llama_cpp_wheel(builds, build=builder)
    assert backend == "cuda" and wheel.parent == bootstrap.wheel_cache_folder(builds[0].flags, "nvcc 13.0")
    assert bootstrap.llama_cpp_wheel(builds, build=builder) == (wheel, "cuda")
    assert len(builder.calls) == 1
    assert bootstrap.engine_stamp(choice, "cuda") == {
        "engine_backend": "cuda",
        "engine_backend_reason": "Building llama.cpp with CUDA for your NVIDIA H200 (nvcc 13.0 found)."}


def test_the_cpu_chain_is_as_before(capsys: pytest.CaptureFixture[str]) -> None:
    builds = bootstrap.engine_builds(Choice("cpu"), [VARIANTS, PORTABLE_AVX2])
    builder = Builder(fail=("-DGGML_CPU_ALL_VARIANTS=ON",))
    wheel, backend = bootstrap.llama_cpp_wheel(builds, build=builder)
    assert (wheel.parent, backend) == (bootstrap.wheel_cache_folder(PORTABLE_AVX2), "cpu")
    assert "That build failed; building the single portable variant instead ..." in capsys.readouterr().out
    assert bootstrap.llama_cpp_wheel(builds, build=builder) == (wheel, "cpu")  # the portable wheel, not a retry
    assert builder.calls == [VARIANTS, PORTABLE_AVX2]
    with pytest.raises(SystemExit, match="llama-cpp-python could not be built"):
        bootstrap.llama_cpp_wheel([bootstrap.Build("cpu", ["-DGGML_CPU_ALL_VARIANTS=ON"])], build=builder)
