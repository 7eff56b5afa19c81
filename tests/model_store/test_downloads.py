"""Downloads against a local Hub: progress, resume after a killed process, bad servers, bad names, full disk."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from model_store.downloads import (
    ChecksumMismatchError,
    DownloadCancelled,
    DownloadError,
    ModelDownloader,
    RetryPolicy,
    UnsafeNameError,
    safe_relative_path,
)
from model_store.errors import DiskFullError
from model_store.hub import HubClient, ModelOption, RemoteFile
from model_store.registry import ModelRegistry
from tests.hub_server import COMMIT, HubFile, HubRepo, HubServer

CHILD = Path(__file__).with_name("download_child.py")


def option(hub, repo: str, label: str, token=None) -> ModelOption:
    details = HubClient(endpoint=hub.endpoint, token=lambda: token).details(repo)
    return next(o for o in details.options if o.label == label)


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


def downloader(hub, models_dir: Path, **kwargs) -> ModelDownloader:
    return ModelDownloader(models_dir, ModelRegistry(models_dir / "models.json"), endpoint=hub.endpoint, **kwargs)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_verifies_registers_and_reports_progress(hub, models_dir, gguf_files) -> None:
    reports = []
    model = downloader(hub, models_dir).download(option(hub, "acme/Tiny-Chat-GGUF", "Q8_0"), progress=reports.append)
    assert model.path == models_dir.resolve() / "hub" / "acme" / "Tiny-Chat-GGUF" / "tiny-chat.Q8_0.gguf"
    assert sha(model.path) == sha(gguf_files["big"])
    assert ModelRegistry(models_dir / "models.json").get(model.id).path == model.path
    assert reports[-1].done_bytes == reports[-1].total_bytes == gguf_files["big"].stat().st_size
    assert [r.done_bytes for r in reports] == sorted(r.done_bytes for r in reports)
    assert not list((models_dir / ".partial").rglob("*.part"))


def test_a_split_model_downloads_every_part(hub, models_dir) -> None:
    model = downloader(hub, models_dir).download(option(hub, "acme/Split-GGUF", "Q4_K_M"))
    folder = model.path.parent
    assert sorted(p.name for p in folder.iterdir()) == ["split-Q4_K_M-00001-of-00002.gguf",
                                                        "split-Q4_K_M-00002-of-00002.gguf"]
    assert model.path.name.endswith("00001-of-00002.gguf")  # llama.cpp opens the first part


def test_resume_after_the_process_was_killed_at_60_percent(hub, models_dir, gguf_files) -> None:
    size = gguf_files["big"].stat().st_size
    hub.behaviour.throttle_bytes_per_s = size / 3  # ~3 s for the whole file
    child = subprocess.Popen([sys.executable, str(CHILD), hub.endpoint, str(models_dir), "acme/Tiny-Chat-GGUF",
                              "Q8_0"], stdout=subprocess.PIPE, text=True)
    for line in child.stdout:
        if line.startswith("progress") and int(line.split()[1]) >= 0.6 * size:
            child.kill()
            break
    child.wait()
    partial = next((models_dir / ".partial").rglob("*.part"))
    kept = partial.stat().st_size
    assert 0.5 * size < kept < size

    hub.behaviour.throttle_bytes_per_s = None
    deadline = time.monotonic() + 10
    while hub.connections and time.monotonic() < deadline:  # the server may still write one block to the dead
        time.sleep(0.01)                                      # child's socket (CI once counted 64 KiB of it here)
    assert not hub.connections
    sent_before = hub.bytes_sent
    pending = downloader(hub, models_dir).pending()  # what a restarted Hearth finds
    assert [p.key for p in pending] == ["acme/Tiny-Chat-GGUF/tiny-chat.Q8_0.gguf"]
    model = downloader(hub, models_dir).download(pending[0])
    assert sha(model.path) == sha(gguf_files["big"])
    assert hub.bytes_sent - sent_before == size - kept  # only the missing bytes were fetched
    assert ("GET", "/acme/Tiny-Chat-GGUF/resolve/0123456789abcdef0123456789abcdef01234567/tiny-chat.Q8_0.gguf",
            f"bytes={kept}-") in hub.log


def test_a_server_that_ignores_range_makes_it_start_over_correctly(hub, models_dir, gguf_files) -> None:
    choice = option(hub, "acme/Tiny-Chat-GGUF", "Q8_0")
    loader = downloader(hub, models_dir)
    part = loader.partial_folder(choice) / "tiny-chat.Q8_0.gguf.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(gguf_files["big"].read_bytes()[:100_000])
    hub.behaviour.ignore_range = True
    model = loader.download(choice)
    assert sha(model.path) == sha(gguf_files["big"])


def test_a_flipped_byte_is_caught_and_nothing_is_installed(hub, models_dir) -> None:
    hub.behaviour.flip_byte_in.add("tiny-chat.Q8_0.gguf")
    loader = downloader(hub, models_dir)
    with pytest.raises(ChecksumMismatchError, match="arrived damaged"):
        loader.download(option(hub, "acme/Tiny-Chat-GGUF", "Q8_0"))
    assert not list(models_dir.rglob("*.gguf")) and not list(models_dir.rglob("*.part"))
    assert ModelRegistry(models_dir / "models.json").all() == []


def test_a_transfer_cut_short_is_resumed_within_the_same_download(hub, models_dir, gguf_files) -> None:
    hub.behaviour.truncate_after = 1_500_000  # every response stops after 1.5 MB
    model = downloader(hub, models_dir).download(option(hub, "acme/Tiny-Chat-GGUF", "Q8_0"))
    assert sha(model.path) == sha(gguf_files["big"])
    ranges = [entry[2] for entry in hub.log if entry[0] == "GET" and entry[1].endswith("Q8_0.gguf")]
    assert ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:])


def test_names_that_escape_the_models_folder_are_refused(hub, models_dir, tmp_path) -> None:
    (choice,) = HubClient(endpoint=hub.endpoint).details("evil/Traversal-GGUF").options
    with pytest.raises(UnsafeNameError, match="outside Hearth's models folder"):
        downloader(hub, models_dir).download(choice)
    assert not (tmp_path / "escape.gguf").exists() and not list(tmp_path.rglob("escape.gguf"))
    for name in ["../x.gguf", "/etc/passwd", "a/../../b.gguf", "C:\\x.gguf", "a\\b.gguf", "", "..", "ok/.hidden"]:
        with pytest.raises(UnsafeNameError):
            safe_relative_path(name)
    assert str(safe_relative_path("acme/Model-GGUF", "Q4_K_M/model.gguf")) == "acme/Model-GGUF/Q4_K_M/model.gguf"


def test_not_enough_disk_space_is_said_before_starting(hub, models_dir) -> None:
    loader = downloader(hub, models_dir, free_space=lambda _folder: 1_000_000)
    with pytest.raises(DiskFullError, match="Not enough disk space"):
        loader.download(option(hub, "acme/Tiny-Chat-GGUF", "Q8_0"))
    assert not [entry for entry in hub.log if "/resolve/" in entry[1]]


def test_cancel_keeps_the_partial_file_until_discarded(hub, models_dir) -> None:
    hub.behaviour.throttle_bytes_per_s = 1_000_000
    choice = option(hub, "acme/Tiny-Chat-GGUF", "Q8_0")
    loader = downloader(hub, models_dir)
    cancel = threading.Event()

    def stop_half_way(progress) -> None:
        if progress.done_bytes > 1_000_000:
            cancel.set()

    with pytest.raises(DownloadCancelled):
        loader.download(choice, progress=stop_half_way, cancel=cancel)
    assert loader.pending() and next(models_dir.rglob("*.part")).stat().st_size > 0
    loader.discard(choice)
    assert loader.pending() == [] and not list(models_dir.rglob("*.part"))


def test_a_gated_model_downloads_with_the_token(hub, models_dir, gguf_files) -> None:
    choice = option(hub, "acme/Gated-GGUF", "Q4_0", token="hf_good_token")
    model = downloader(hub, models_dir, token=lambda: "hf_good_token").download(choice)
    assert sha(model.path) == sha(gguf_files["small"])


def test_tries_after_a_dropped_connection_back_off_exponentially_with_jitter(hub, models_dir) -> None:
    hub.behaviour.truncate_after = 0  # every answer: the headers, then the connection closes
    policy = RetryPolicy(attempts=4, first_delay_s=0.2, max_delay_s=0.5, jitter=0.5)
    choice = option(hub, "acme/Tiny-Chat-GGUF", "Q8_0")
    with pytest.raises(DownloadError, match="kept breaking off"):
        downloader(hub, models_dir, retry=policy).download(choice)
    times = [when for (method, path, _), when in zip(hub.log, hub.request_times)
             if method == "GET" and path.endswith("Q8_0.gguf")]
    assert len(times) == policy.attempts
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    for failures, gap in enumerate(gaps, 1):
        full = min(policy.max_delay_s, policy.first_delay_s * 2 ** (failures - 1))  # 0.2, 0.4, then capped at 0.5
        assert full * (1 - policy.jitter) <= gap < full + 0.3, gaps  # 0.3 s: the request itself on a busy machine
    assert gaps[1] > gaps[0]  # the pause grows: 0.1–0.2 s, then 0.2–0.4 s


def test_the_pause_grows_to_its_bound_and_the_jitter_only_shortens_it() -> None:
    policy = RetryPolicy(first_delay_s=1.0, max_delay_s=30.0, jitter=0.5)
    assert [policy.delay_s(n, chance=lambda: 0.0) for n in (1, 2, 3, 4, 5, 6, 50)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.delay_s(3, chance=lambda: 0.999) == pytest.approx(2.002)
    assert all(0.5 <= policy.delay_s(1) <= 1.0 for _ in range(100))


def test_a_transfer_that_breaks_off_with_progress_is_not_given_up(hub, models_dir, gguf_files) -> None:
    hub.behaviour.truncate_after = 600_000  # ~6 tries for the 3 MB file, each bringing new bytes
    policy = RetryPolicy(attempts=2, first_delay_s=0.01, max_delay_s=0.01)
    model = downloader(hub, models_dir, retry=policy).download(option(hub, "acme/Tiny-Chat-GGUF", "Q8_0"))
    assert sha(model.path) == sha(gguf_files["big"])


def test_cancel_while_waiting_to_try_again_stops_at_once(hub, models_dir) -> None:
    hub.behaviour.truncate_after = 0
    cancel = threading.Event()
    loader = downloader(hub, models_dir, retry=RetryPolicy(first_delay_s=30.0, max_delay_s=30.0, jitter=0.0))
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    try:
        with pytest.raises(DownloadCancelled):
            loader.download(option(hub, "acme/Tiny-Chat-GGUF", "Q8_0"), cancel=cancel)
    finally:
        timer.join()


@pytest.fixture
def git_hub(gguf_files):
    """A Hub whose GGUF files are kept in git itself, not LFS: it publishes their blob id, no sha256."""
    repo = HubRepo("acme/Git-GGUF", [HubFile("git.Q4_0.gguf", gguf_files["small"], lfs=False),
                                     HubFile("git.Q8_0.gguf", gguf_files["big"], lfs=False)])
    with HubServer([repo]) as server:
        yield server


def test_a_file_kept_in_git_is_verified_by_its_blob_id(git_hub, models_dir, gguf_files) -> None:
    choice = option(git_hub, "acme/Git-GGUF", "Q8_0")
    (remote,) = choice.parts
    assert remote.sha256 == ""
    if shutil.which("git"):
        printed = subprocess.run(["git", "hash-object", str(gguf_files["big"])], capture_output=True, text=True)
        assert remote.git_sha1 == printed.stdout.strip()
    model = downloader(git_hub, models_dir).download(choice)
    assert sha(model.path) == sha(gguf_files["big"])
    assert ModelRegistry(models_dir / "models.json").get(model.id).sha256 == sha(gguf_files["big"])


def test_a_damaged_file_kept_in_git_is_caught(git_hub, models_dir) -> None:
    git_hub.behaviour.flip_byte_in.add("git.Q8_0.gguf")
    with pytest.raises(ChecksumMismatchError, match="arrived damaged"):
        downloader(git_hub, models_dir).download(option(git_hub, "acme/Git-GGUF", "Q8_0"))
    assert not list(models_dir.rglob("*.gguf")) and not list(models_dir.rglob("*.part"))


def test_a_file_with_no_published_checksum_is_checked_by_size(git_hub, models_dir, gguf_files) -> None:
    size = gguf_files["small"].stat().st_size
    unhashed = ModelOption("acme/Git-GGUF", "Q4_0", (RemoteFile("git.Q4_0.gguf", size, sha256=""),), COMMIT)
    model = downloader(git_hub, models_dir).download(unhashed)
    assert sha(model.path) == sha(gguf_files["small"])
    wrong_size = ModelOption("acme/Git-GGUF", "Q4_0", (RemoteFile("git.Q4_0.gguf", size - 1, sha256=""),), COMMIT)
    with pytest.raises(ChecksumMismatchError):
        downloader(git_hub, tmp_models(models_dir)).download(wrong_size)


def tmp_models(models_dir: Path) -> Path:
    other = models_dir.parent / "other-models"
    other.mkdir()
    return other
