"""Execution selection rules, on made-up hardware and model facts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from inference.errors import ModelTooLargeError
from inference.gguf_info import GgufInfo
from inference.hardware import CpuFacts, GpuDevice, Hardware, system_gpu_names
from inference.selector import Preferences, cpu_fallback, estimate_memory, kv_cache_bytes, select_plan

GIB = 1 << 30


def model(*, file_gb: float = 0.25, params: float = 0.27e9, architecture: str = "gemma3", context: int = 32768,
          layers: int = 18, kv_heads: int = 1, key: int = 256) -> GgufInfo:
    metadata = {
        "general.architecture": architecture,
        "general.name": f"Test {architecture}",
        f"{architecture}.context_length": context,
        f"{architecture}.block_count": layers,
        f"{architecture}.embedding_length": 640,
        f"{architecture}.attention.head_count": 4,
        f"{architecture}.attention.head_count_kv": kv_heads,
        f"{architecture}.attention.key_length": key,
        f"{architecture}.attention.value_length": key,
    }
    size = int(file_gb * GIB)
    return GgufInfo(path=Path("test.gguf"), file_size=size, version=3, tensor_count=1, data_end=size,
                    metadata=metadata, parameter_count=int(params))


def machine(*, ram_gb: float = 16, free_ram_gb: float | None = None, gpus=(), torch_backends=("cuda",),
            llama_offload: bool = False, cores: int = 8) -> Hardware:
    return Hardware(
        cpu=CpuFacts(physical_cores=cores, logical_cores=cores * 2, features=frozenset({"avx2"})),
        ram_total_bytes=int(ram_gb * GIB),
        ram_available_bytes=int((free_ram_gb if free_ram_gb is not None else ram_gb * 0.8) * GIB),
        gpus=tuple(gpus),
        llama_gpu_offload=llama_offload,
        torch_gpu_backends=torch_backends if gpus else (),
    )


def gpu(total_gb: float, free_gb: float, name: str = "NVIDIA RTX 4090") -> GpuDevice:
    return GpuDevice(backend="cuda", index=0, name=name, total_bytes=int(total_gb * GIB), free_bytes=int(free_gb * GIB))


def test_kv_cache_size_follows_the_header() -> None:
    # 18 layers x 4096 tokens x 1 KV head x (256 + 256) x 2 bytes
    assert kv_cache_bytes(model(), 4096) == 18 * 4096 * 512 * 2


def test_no_gpu_runs_quantized_on_the_cpu_one_thread_per_core() -> None:
    plan = select_plan(machine(cores=6), model(), Preferences())
    assert (plan.engine, plan.device, plan.n_threads, plan.n_gpu_layers, plan.n_ctx) == ("llama.cpp", "CPU", 6, 0, 4096)
    assert "no GPU was found" in plan.reason and "one per physical core" in plan.reason


def test_a_model_that_fits_runs_on_the_gpu_with_torch() -> None:
    plan = select_plan(machine(gpus=[gpu(24, 22)]), model(file_gb=1.2, params=2e9), Preferences())
    assert (plan.engine, plan.device, plan.torch_device, plan.dtype) == ("torch", "CUDA", "cuda:0", "bfloat16")
    assert "fit" in plan.reason and "RTX 4090" in plan.reason


def test_a_tiny_model_stays_on_the_cpu_where_it_is_faster() -> None:
    plan = select_plan(machine(gpus=[gpu(24, 22)]), model(params=0.27e9), Preferences())
    assert plan.device == "CPU" and "runs faster quantized on the CPU" in plan.reason
    forced = select_plan(machine(gpus=[gpu(24, 22)]), model(params=0.27e9), Preferences(device="gpu"))
    assert forced.device == "CUDA"


def test_a_model_too_big_for_the_gpu_stays_on_the_cpu_and_says_why() -> None:
    # 7B parameters dequantized to 16-bit: ~14 GB, the GPU has 8 GB free.
    plan = select_plan(machine(gpus=[gpu(8, 8)]), model(file_gb=4, params=7e9, layers=32, kv_heads=8, key=128),
                       Preferences())
    assert plan.device == "CPU"
    assert "needs" in plan.reason and "free" in plan.reason and "cannot run part of a model" in plan.reason


def test_the_margin_keeps_a_barely_fitting_model_off_the_gpu() -> None:
    big = model(file_gb=1.2, params=2e9)
    need = estimate_memory(big, 4096, engine="torch").total_bytes
    just_enough = need / GIB + 0.01
    plan = select_plan(machine(gpus=[gpu(just_enough, just_enough)]), big, Preferences())
    assert plan.device == "CPU"


def test_llama_cpp_gpu_build_offloads_every_layer() -> None:
    plan = select_plan(machine(gpus=[gpu(24, 22)], llama_offload=True), model(), Preferences())
    assert (plan.engine, plan.n_gpu_layers, plan.dtype) == ("llama.cpp", -1, "quantized")


def test_an_architecture_torch_cannot_load_stays_on_the_cpu() -> None:
    plan = select_plan(machine(gpus=[gpu(24, 22)]), model(architecture="rwkv7", params=2e9), Preferences())
    assert plan.device == "CPU" and "rwkv7" in plan.reason


def test_the_user_can_force_the_cpu() -> None:
    plan = select_plan(machine(gpus=[gpu(24, 22)]), model(), Preferences(device="cpu", n_threads=3))
    assert plan.device == "CPU" and plan.n_threads == 3
    assert "you chose the CPU" in plan.reason and "as set in Settings" in plan.reason


def test_forcing_the_gpu_uses_it_even_when_the_estimate_says_no() -> None:
    plan = select_plan(machine(gpus=[gpu(8, 8)]), model(file_gb=4, params=7e9), Preferences(device="gpu"))
    assert plan.device == "CUDA" and "falls back to the CPU" in plan.reason


def test_forcing_the_gpu_without_one_runs_on_the_cpu() -> None:
    plan = select_plan(machine(), model(), Preferences(device="gpu"))
    assert plan.device == "CPU" and "no GPU was found" in plan.reason


def test_measured_threads_win_over_the_core_count() -> None:
    plan = select_plan(machine(cores=8), model(), Preferences(), measured_threads=6)
    assert plan.n_threads == 6 and "measured fastest here" in plan.reason


def test_a_model_bigger_than_ram_is_refused_before_loading() -> None:
    with pytest.raises(ModelTooLargeError, match=r"needs about .* GB of memory .* this computer has 8.0 GB"):
        select_plan(machine(ram_gb=8), model(file_gb=40, params=70e9, layers=80, kv_heads=8, key=128), Preferences())


def test_little_free_ram_is_mentioned_but_allowed() -> None:
    plan = select_plan(machine(ram_gb=16, free_ram_gb=0.2), model(), Preferences())
    assert "close other programs" in plan.reason


def test_context_beyond_the_model_limit_is_clamped_with_a_note() -> None:
    plan = select_plan(machine(), model(context=2048), Preferences(context_length=100_000))
    assert plan.n_ctx == 2048 and "at most 2,048 tokens" in plan.reason


def test_short_trained_context_caps_the_default() -> None:
    assert select_plan(machine(), model(context=1024), Preferences()).n_ctx == 1024


def test_cpu_fallback_says_what_failed() -> None:
    hardware = machine(gpus=[gpu(24, 22)])
    big = model(file_gb=1.2, params=2e9)
    gpu_plan = select_plan(hardware, big, Preferences())
    assert gpu_plan.device == "CUDA"
    plan = cpu_fallback(gpu_plan, hardware, big, "CUDA out of memory")
    assert plan.device == "CPU" and "loading on the CUDA failed (CUDA out of memory)" in plan.reason


def remote(size_gb: float, params: float, architecture: str = "llama"):
    from inference.selector import estimated_info

    return estimated_info(file_size=int(size_gb * GIB), parameters=int(params), architecture=architecture,
                          context_length=32768)


def test_verdicts_before_download() -> None:
    from inference.selector import download_verdict

    laptop = machine(ram_gb=16)
    assert download_verdict(laptop, remote(0.4, 0.5e9), Preferences(), free_disk=100 * GIB).kind == "cpu"
    gpu_box = machine(ram_gb=32, gpus=[gpu(24, 22)])
    verdict = download_verdict(gpu_box, remote(4.4, 8e9), Preferences(), free_disk=100 * GIB)
    assert verdict.kind == "gpu" and "RTX 4090" in verdict.sentence
    too_big = download_verdict(laptop, remote(40, 70e9), Preferences(), free_disk=100 * GIB)
    assert too_big.kind == "too_big" and "needs about" in too_big.sentence
    assert download_verdict(laptop, remote(4.4, 8e9), Preferences(), free_disk=GIB).kind == "no_disk"


def test_the_kv_estimate_is_close_to_real_models() -> None:
    # Llama 3 8B: 32 layers x 8 KV heads x 128 x 2 (K and V) x 2 bytes = 131 KB per token.
    estimate = kv_cache_bytes(remote(4.4, 8e9), 1)
    assert 80_000 < estimate < 180_000


def test_a_gpu_no_engine_can_use_is_named_with_what_it_would_need() -> None:
    hardware = replace(machine(cores=4), unusable_gpus=("NVIDIA GeForce RTX 4070",))
    plan = select_plan(hardware, model(), Preferences())
    assert plan.device == "CPU"
    assert "no GPU engine for the NVIDIA GeForce RTX 4070" in plan.reason
    assert "CUDA" in plan.reason and "CPU engine only" in plan.reason


def test_the_install_s_own_sentence_says_why_a_gpu_is_unused(tmp_path: Path) -> None:
    from inference.hardware import engine_build_note

    sentence = "No CUDA compiler found: CPU only; install the CUDA toolkit to use your NVIDIA GeForce RTX 4070."
    (tmp_path / "hearth-install.json").write_text(json.dumps({"engine_backend": "cpu",
                                                              "engine_backend_reason": sentence}))
    assert engine_build_note(tmp_path) == sentence and engine_build_note(tmp_path / "none") == ""
    hardware = replace(machine(), unusable_gpus=("NVIDIA GeForce RTX 4070",), engine_build_note=sentence)
    plan = select_plan(hardware, model(), Preferences())
    assert plan.device == "CPU" and "install the CUDA toolkit to use your NVIDIA GeForce RTX 4070" in plan.reason


def test_gpus_are_found_in_sysfs_without_a_gpu_library(tmp_path: Path) -> None:
    for card, vendor in (("card0", "0x8086"), ("card1", "0x10de"), ("card2", "0x1002")):
        (tmp_path / card / "device").mkdir(parents=True)
        (tmp_path / card / "device" / "vendor").write_text(vendor + "\n")
    (tmp_path / "card1-HDMI-A-1").mkdir()  # a connector, not a card
    assert system_gpu_names(tmp_path) == ("NVIDIA GPU", "AMD GPU")  # integrated Intel graphics left out
    assert system_gpu_names(tmp_path / "missing") == ()


def llama_gpu(total_gb: float, free_gb: float, name: str = "NVIDIA GeForce RTX 4070", *, index: int = 0,
              integrated: bool = False) -> GpuDevice:
    return GpuDevice(backend="CUDA" if not integrated else "Vulkan", index=index, name=name,
                     total_bytes=int(total_gb * GIB), free_bytes=int(free_gb * GIB), integrated=integrated)


def llama_machine(*gpus: GpuDevice, ram_gb: float = 32) -> Hardware:
    return replace(machine(ram_gb=ram_gb), llama_gpus=tuple(gpus), llama_gpu_offload=True)


def eight_b(**changes) -> GgufInfo:
    """Llama 3 8B at Q4_K_M: 4.9 GB, of which 4.3 GB in its 32 layers."""
    info = model(file_gb=4.9, params=8e9, architecture="llama", layers=32, kv_heads=8, key=128, context=131072)
    return replace(info, block_bytes=int(4.3 * GIB), **changes)


def test_a_gguf_that_fits_runs_wholly_on_the_gpu_through_llama_cpp() -> None:
    plan = select_plan(llama_machine(llama_gpu(12, 11)), eight_b(), Preferences())
    assert (plan.engine, plan.device, plan.n_gpu_layers, plan.main_gpu) == ("llama.cpp", "CUDA", -1, 0)
    assert not plan.partly_on_gpu and "whole model" in plan.reason and "RTX 4070" in plan.reason
    assert plan.summary() == "llama.cpp · NVIDIA GeForce RTX 4070"


def test_a_gguf_too_big_for_the_gpu_runs_partly_on_it_and_says_how_much() -> None:
    hardware = llama_machine(llama_gpu(8, 4))
    plan = select_plan(hardware, eight_b(), Preferences())
    # Room: 4 GB free - 0.8 GB margin - 0.75 GB compute buffers = 2.45 GB; a layer is 134 MB + 16 MB of KV.
    assert plan.device == "CUDA" and plan.partly_on_gpu
    assert plan.n_gpu_layers == 16 and plan.n_layers == 32
    assert plan.reason.startswith("16 of 32 layers on the NVIDIA GeForce RTX 4070 (CUDA): the whole model")
    assert "needs 5.9 GB and 4.0 GB is free" in plan.reason and "the rest on the CPU with 8 threads" in plan.reason
    assert plan.summary() == "llama.cpp · NVIDIA GeForce RTX 4070 · 16/32 layers"


def test_a_gpu_too_full_for_one_layer_leaves_the_model_on_the_cpu() -> None:
    plan = select_plan(llama_machine(llama_gpu(8, 1.2)), eight_b(), Preferences())
    assert plan.device == "CPU" and "not even one of the model's 32 layers fits" in plan.reason


def test_settings_set_the_gpu_layers() -> None:
    hardware = llama_machine(llama_gpu(24, 22))
    plan = select_plan(hardware, eight_b(), Preferences(n_gpu_layers=10))
    assert plan.n_gpu_layers == 10 and plan.partly_on_gpu and "as set in Settings" in plan.reason
    assert select_plan(hardware, eight_b(), Preferences(n_gpu_layers=99)).n_gpu_layers == -1
    none = select_plan(hardware, eight_b(), Preferences(n_gpu_layers=0))
    assert none.device == "CPU" and "0 GPU layers" in none.reason


def test_of_several_gpus_the_one_with_most_free_memory_is_used_unless_settings_say_otherwise() -> None:
    small, big = llama_gpu(8, 7, "NVIDIA RTX 3070", index=0), llama_gpu(24, 20, "NVIDIA RTX 4090", index=1)
    plan = select_plan(llama_machine(small, big), eight_b(), Preferences())
    assert (plan.gpu_name, plan.main_gpu) == ("NVIDIA RTX 4090", 1)
    assert "Of the 2 GPUs found it is the one with the most free memory" in plan.reason
    chosen = select_plan(llama_machine(small, big), eight_b(), Preferences(gpu=small.key))
    assert (chosen.gpu_name, chosen.main_gpu) == ("NVIDIA RTX 3070", 0) and "You chose this GPU" in chosen.reason
    gone = select_plan(llama_machine(big), eight_b(), Preferences(gpu=small.key))
    assert gone.gpu_name == "NVIDIA RTX 4090" and "not there now" in gone.reason


def test_a_discrete_gpu_wins_over_an_integrated_one_with_more_shared_memory() -> None:
    laptop = llama_machine(llama_gpu(32, 30, "AMD Radeon 780M", integrated=True),
                           llama_gpu(8, 7, "NVIDIA RTX 4060 Laptop GPU", index=1))
    plan = select_plan(laptop, eight_b(), Preferences())
    assert plan.gpu_name == "NVIDIA RTX 4060 Laptop GPU" and "it is the discrete one" in plan.reason


def test_after_a_gpu_failure_half_the_layers_are_tried_then_none() -> None:
    from inference.selector import fewer_gpu_layers

    plan = select_plan(llama_machine(llama_gpu(12, 11)), eight_b(), Preferences())
    half = fewer_gpu_layers(plan, "out of memory")
    assert half.n_gpu_layers == 16 and "with 32 the GPU failed (out of memory)" in half.reason
    steps = []
    while half is not None:
        steps.append(half.n_gpu_layers)
        half = fewer_gpu_layers(half, "out of memory")
    assert steps == [16, 8, 4, 2, 1]
    cpu = select_plan(machine(), model(), Preferences())
    assert fewer_gpu_layers(cpu, "x") is None


def test_the_verdict_before_download_says_partly_on_the_gpu() -> None:
    from inference.selector import download_verdict

    verdict = download_verdict(llama_machine(llama_gpu(8, 4)), remote(4.9, 8e9), Preferences(), free_disk=100 * GIB)
    assert verdict.kind == "gpu_partial" and "Partly on the NVIDIA GeForce RTX 4070" in verdict.sentence
    whole = download_verdict(llama_machine(llama_gpu(24, 22)), remote(4.9, 8e9), Preferences(), free_disk=100 * GIB)
    assert whole.kind == "gpu"


def test_layer_sizes_are_read_from_the_file(tmp_path: Path) -> None:
    from inference.gguf_info import read_gguf_info
    from tests.gguf_factory import write_random_gemma3

    info = read_gguf_info(write_random_gemma3(tmp_path / "m.gguf", layers=3))
    # Per layer: 4 norms of 64 + 2 of 32 (f32), q/o 64x64, k/v 32x64, gate/up/down 128x64 (f16).
    per_layer = (4 * 64 + 2 * 32) * 4 + (2 * 64 * 64 + 2 * 32 * 64 + 3 * 128 * 64) * 2
    assert info.block_bytes == 3 * per_layer
