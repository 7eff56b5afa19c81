"""Model download figures (issue 5), against the local Hub serving the built-in model (253 MB).

    python tests/benchmarks/download_figures.py [--runs N]

- download_mb_s_ratio: Hearth's downloader (resumable, hashing as it goes) / a
  plain ``hf_hub_download`` of the same file from the same server, same run.
- resume_overhead: bytes the server sent for a download killed at 60 % (its
  process SIGKILLed) and finished by a new process, / the file's size.
- ui_gap_max_ms (and p95): lateness of a 5 ms timer in the model manager
  window while a download resumes: first checking (hashing) the 60 % already
  on disk, then downloading the rest and verifying.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from model_store.builtin_model import packaged_gemma_chunks  # noqa: E402
from model_store.downloads import ModelDownloader  # noqa: E402
from model_store.hub import HubClient  # noqa: E402
from model_store.registry import ModelRegistry  # noqa: E402
from tests.hub_server import HubFile, HubRepo, HubServer  # noqa: E402

REPO_ID = "google/gemma-3-270m-GGUF"
FILE = "gemma-3-270m-Q4_K_M.gguf"
CHILD = REPO / "tests" / "model_store" / "download_child.py"


def built_in_model(folder: Path) -> Path:
    chunks = packaged_gemma_chunks()
    path = folder / FILE
    with path.open("wb") as out:
        for chunk in chunks.chunk_paths:
            out.write(chunk.read_bytes())
    return path


def throughput(hub: HubServer, work: Path, runs: int) -> dict:
    from huggingface_hub import hf_hub_download

    option = HubClient(endpoint=hub.endpoint).details(REPO_ID).options[0]
    size = option.size
    ours, plain = [], []
    for run in range(runs):  # interleaved, so machine load hits both alike
        folder = work / f"ours-{run}"
        folder.mkdir()
        started = time.perf_counter()
        ModelDownloader(folder, ModelRegistry(folder / "models.json"), endpoint=hub.endpoint).download(option)
        ours.append(size / (time.perf_counter() - started) / 1e6)
        shutil.rmtree(folder)
        started = time.perf_counter()
        hf_hub_download(REPO_ID, FILE, endpoint=hub.endpoint, cache_dir=work / f"hf-{run}", token=False)
        plain.append(size / (time.perf_counter() - started) / 1e6)
        shutil.rmtree(work / f"hf-{run}")
    return {"download_mb_s": round(statistics.median(ours), 1), "hf_hub_download_mb_s": round(statistics.median(plain), 1),
            "download_mb_s_ratio": round(statistics.median(ours) / statistics.median(plain), 3)}


def resume_overhead(hub: HubServer, work: Path) -> dict:
    folder = work / "resume"
    folder.mkdir()
    size = Path(hub.repos[REPO_ID].files[0].source).stat().st_size
    hub.behaviour.throttle_bytes_per_s = size / 4  # slow enough to stop it near 60 %
    sent_before = hub.bytes_sent
    child = subprocess.Popen([sys.executable, str(CHILD), hub.endpoint, str(folder), REPO_ID, "Q4_K_M"],
                             stdout=subprocess.PIPE, text=True)
    for line in child.stdout:
        if line.startswith("progress") and int(line.split()[1]) >= 0.6 * size:
            child.kill()
            break
    child.wait()
    kept = next(folder.rglob("*.part")).stat().st_size
    hub.behaviour.throttle_bytes_per_s = None
    finished = subprocess.run([sys.executable, str(CHILD), hub.endpoint, str(folder), REPO_ID, "Q4_K_M"],
                              capture_output=True, text=True, check=True)
    assert finished.stdout.strip().endswith("done")
    sent = hub.bytes_sent - sent_before
    return {"resume_overhead": round(sent / size, 4), "killed_at_fraction": round(kept / size, 3)}


def ui_gap(hub: HubServer, work: Path) -> dict:
    from keyring.backends import fail
    from PySide6.QtWidgets import QApplication

    from gui.download_manager import DownloadManager
    from gui.model_manager import ModelManager
    from inference.hardware import probe_hardware
    from model_store.credentials import TokenStore
    from tests.gui.heartbeat import Heartbeat

    app = QApplication.instance() or QApplication(sys.argv)
    folder = work / "ui"
    folder.mkdir()
    registry = ModelRegistry(folder / "models.json")
    downloader = ModelDownloader(folder, registry, endpoint=hub.endpoint)
    option = HubClient(endpoint=hub.endpoint).details(REPO_ID).options[0]
    part = downloader.partial_folder(option) / f"{FILE}.part"  # 60 % on disk: the resume hashes it first
    part.parent.mkdir(parents=True)
    with Path(hub.repos[REPO_ID].files[0].source).open("rb") as source:
        part.write_bytes(source.read(int(option.size * 0.6)))
    downloads = DownloadManager(downloader)
    window = ModelManager(hub=HubClient(endpoint=hub.endpoint), downloads=downloads, registry=registry,
                          tokens=TokenStore(fail.Keyring()), probe_hardware=probe_hardware, models_dir=folder)
    window.show()
    for _ in range(50):
        app.processEvents()
        time.sleep(0.01)
    hub.behaviour.throttle_bytes_per_s = option.size / 5  # a few seconds of download to watch
    heartbeat = Heartbeat()
    downloads.start(option)
    while downloads.active() or not registry.all():
        app.processEvents()
        time.sleep(0.001)
    heartbeat.stop()
    hub.behaviour.throttle_bytes_per_s = None
    lateness = sorted(heartbeat.lateness_ms)
    window.close()
    return {"ui_gap_p95_ms": round(lateness[int(len(lateness) * 0.95)], 1), "ui_gap_max_ms": round(lateness[-1], 1),
            "ui_beats": len(lateness)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        source = built_in_model(work)
        with HubServer([HubRepo(REPO_ID, [HubFile(FILE, source)])]) as hub:
            figures = {"file_mb": round(source.stat().st_size / 1e6, 1)}
            figures.update(throughput(hub, work, args.runs))
            print(json.dumps(figures), flush=True)
            figures.update(resume_overhead(hub, work))
            print(json.dumps(figures), flush=True)
            figures.update(ui_gap(hub, work))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
