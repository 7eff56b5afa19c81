"""Which devices llama.cpp offloads to: its own order and rules, and the real library on this machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from inference.cpu_backends import load_cpu_backend
from inference.gpu_backends import LlamaDevice, gpu_backend_files, llama_devices, load_gpu_backends, offload_targets

REPO = Path(__file__).resolve().parents[2]
GIB = 1 << 30


def device(name: str, kind: str = "gpu", backend: str = "CUDA", device_id: str = "", free_gb: float = 8) -> LlamaDevice:
    return LlamaDevice(backend=backend, name=name, kind=kind, total_bytes=int(16 * GIB),
                       free_bytes=int(free_gb * GIB), device_id=device_id)


def test_discrete_gpus_are_numbered_in_order_and_the_cpu_is_left_out() -> None:
    found = offload_targets([device("CPU", kind="cpu", backend="CPU"), device("RTX 3070"), device("RTX 4090")])
    assert [(gpu.index, gpu.name) for gpu in found] == [(0, "RTX 3070"), (1, "RTX 4090")]


def test_a_card_two_backends_see_counts_once_and_remote_devices_are_left_out() -> None:
    found = offload_targets([device("RTX 4090", device_id="0000:01:00.0"),
                             device("RTX 4090 (Vulkan)", backend="Vulkan", device_id="0000:01:00.0"),
                             device("server:50052", backend="RPC")])
    assert [gpu.name for gpu in found] == ["RTX 4090"]


def test_an_integrated_gpu_is_used_only_without_a_discrete_one() -> None:
    igpu = device("Radeon 780M", kind="igpu", backend="Vulkan", free_gb=30)
    assert [gpu.name for gpu in offload_targets([igpu, device("RTX 4060")])] == ["RTX 4060"]
    assert [(gpu.index, gpu.name) for gpu in offload_targets([igpu])] == [(0, "Radeon 780M")]


def test_the_real_llama_cpp_lists_this_machine_s_cpu_and_no_gpu() -> None:
    load_cpu_backend()
    devices = llama_devices()
    cpu = [found for found in devices if found.kind == "cpu"]
    assert cpu and cpu[0].backend == "CPU" and cpu[0].total_bytes > GIB  # the struct is read as llama.cpp lays it out
    assert offload_targets(devices) == []  # a CPU-only build


def test_a_gpu_library_that_cannot_load_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "libggml-cuda.so").write_bytes(b"not a library: as when the NVIDIA driver is missing")
    (tmp_path / "libggml-cpu-zen4.so").write_bytes(b"")
    (tmp_path / "ggml-vulkan.dll").write_bytes(b"")
    assert [path.name for path in gpu_backend_files(tmp_path)] == ["ggml-vulkan.dll", "libggml-cuda.so"]
    load_cpu_backend()
    assert load_gpu_backends(tmp_path) == []
    assert offload_targets(llama_devices()) == []


def test_the_gpu_probe_runs_from_source_and_as_the_app_would_frozen() -> None:
    for command in ([sys.executable, "-m", "inference.gpu_probe"], [sys.executable, "main.py", "--probe-gpus"]):
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
        found = json.loads(result.stdout.strip().splitlines()[-1])
        assert set(found) == {"llama", "torch", "notes"} and found["notes"] == []
        assert isinstance(found["llama"], list) and isinstance(found["torch"], list)
