"""Pickles and PyTorch files are refused everywhere before they are opened: import, download, load, listings.

The pickles here are real attacks: unpickling one creates a canary folder
(:func:`test_the_pickles_here_are_real_attacks` shows it). Every other test
checks that the canary never appears.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from inference.errors import NotGgufError
from inference.gguf_info import read_gguf_info
from model_store.downloads import ModelDownloader
from model_store.hub import HubClient, ModelOption, RemoteFile
from model_store.model_files import (
    CODE_CARRYING_SUFFIXES,
    DANGER,
    CodeCarryingFileError,
    code_carrying_reason,
    read_head,
    refuse_code_carrying,
)
from model_store.registry import InstalledModel, ModelRegistry
from tests.hub_server import COMMIT, HubFile, HubRepo, HubServer

SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".joblib")


class Exploit:
    """Unpickling this calls ``os.mkdir(canary)``: what a hostile checkpoint does with os.system."""

    def __init__(self, canary: Path) -> None:
        self.canary = str(canary)

    def __reduce__(self):
        return (os.mkdir, (self.canary,))


def hostile_files(canary: Path) -> dict[str, bytes]:
    """The same attack in each container that carries pickles."""
    payload = pickle.dumps(Exploit(canary), protocol=4)
    torch_zip = io.BytesIO()
    with zipfile.ZipFile(torch_zip, "w") as archive:  # torch.save's layout since PyTorch 1.6
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
    npy = io.BytesIO()
    np.save(npy, np.array([Exploit(canary)], dtype=object), allow_pickle=True)
    files = {f"pickle_protocol_{protocol}": pickle.dumps(Exploit(canary), protocol=protocol) for protocol in range(6)}
    files.update(
        torch_zip=torch_zip.getvalue(),
        numpy_object_array=npy.getvalue(),
        joblib_zlib=zlib.compress(payload),
        joblib_gzip=gzip.compress(payload),
        joblib_bz2=bz2.compress(payload),
        joblib_xz=lzma.compress(payload),
    )
    return files


@pytest.fixture
def canary(tmp_path: Path):
    path = tmp_path / "canary"
    yield path
    assert not path.exists(), "a pickle was opened"


# ------------------------------------------------------------------ the sniffer


def test_the_pickles_here_are_real_attacks(tmp_path: Path) -> None:
    pickle.loads(hostile_files(tmp_path / "control")["pickle_protocol_4"])  # noqa: S301 - the point
    assert (tmp_path / "control").is_dir()


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_code_carrying_names_are_refused_whatever_their_bytes(suffix: str) -> None:
    assert set(SUFFIXES) <= CODE_CARRYING_SUFFIXES
    for name in (f"pytorch_model{suffix}", f"sub/folder/MODEL{suffix.upper()}"):
        reason = code_carrying_reason(name, b"GGUF\x03\x00\x00\x00")
        assert reason == f"Hearth refused {name.rsplit('/', 1)[-1]}. {DANGER}"
    assert DANGER == "This is a PyTorch/pickle file, which can run code when opened; Hearth only opens GGUF files."


@pytest.mark.parametrize("kind", list(hostile_files(Path("x"))))
def test_a_pickle_under_a_gguf_name_is_known_by_its_first_bytes(kind: str, tmp_path: Path, canary: Path) -> None:
    path = tmp_path / "model.Q4_K_M.gguf"
    path.write_bytes(hostile_files(canary)[kind])
    with pytest.raises(CodeCarryingFileError, match="its name says GGUF but its contents do not. This is a PyTorch"):
        refuse_code_carrying(path)


def test_gguf_and_other_files_are_not_called_pickles(tmp_path: Path, tiny_gguf: Path) -> None:
    refuse_code_carrying(tiny_gguf)
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    refuse_code_carrying(text)  # not GGUF either: read_gguf_info says so, without the pickle warning
    assert code_carrying_reason("model.safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{") is None
    assert len(read_head(tiny_gguf)) == 64 and read_head(tmp_path / "missing.gguf") == b""


# ------------------------------------------------------------------ load and import


def test_loading_a_pickle_refuses_it_before_anything_is_parsed(tmp_path: Path, canary: Path) -> None:
    for kind, data in hostile_files(canary).items():
        path = tmp_path / f"{kind}.gguf"
        path.write_bytes(data)
        with pytest.raises(NotGgufError):
            read_gguf_info(path)


def test_the_registry_refuses_code_carrying_files(tmp_path: Path, canary: Path, tiny_gguf: Path) -> None:
    registry = ModelRegistry(tmp_path / "models.json")
    disguised = tmp_path / "disguised.gguf"
    disguised.write_bytes(hostile_files(canary)["torch_zip"])
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(hostile_files(canary)["pickle_protocol_2"])
    for path in (disguised, checkpoint, tmp_path / "not-there-yet.ckpt"):
        with pytest.raises(CodeCarryingFileError, match="PyTorch/pickle"):
            registry.add(InstalledModel(id=f"local/{path}", display_name="x", path=path, sha256="", size_bytes=0,
                                        mtime_ns=0))
    registry.add(InstalledModel(id="local/tiny", display_name="Tiny", path=tiny_gguf, sha256="", size_bytes=0,
                                mtime_ns=0))
    assert [model.id for model in ModelRegistry(tmp_path / "models.json").all()] == ["local/tiny"]


def test_a_model_list_naming_a_pickle_leaves_it_out(tmp_path: Path, tiny_gguf: Path) -> None:
    entry = {"display_name": "x", "sha256": "", "size_bytes": 0, "mtime_ns": 0, "is_demo": False}
    listed = {"version": 1, "default": "bad", "models": [
        {**entry, "id": "bad", "path": str(tmp_path / "pytorch_model.bin")},
        {**entry, "id": "good", "path": str(tiny_gguf)},
    ]}
    (tmp_path / "models.json").write_text(json.dumps(listed), encoding="utf-8")
    registry = ModelRegistry(tmp_path / "models.json")
    assert [model.id for model in registry.all()] == ["good"]
    assert registry.default().id == "good"


@pytest.mark.gui
def test_importing_a_pickle_in_the_model_manager_names_the_danger(qtbot, hub, tmp_path: Path, canary: Path) -> None:
    from keyring.backends import fail

    from gui.download_manager import DownloadManager
    from gui.model_manager import ModelManager
    from inference.hardware import CpuFacts, Hardware
    from model_store.credentials import TokenStore

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    registry = ModelRegistry(models_dir / "models.json")
    downloads = DownloadManager(ModelDownloader(models_dir, registry, endpoint=hub.endpoint))
    window = ModelManager(hub=HubClient(endpoint=hub.endpoint), downloads=downloads, registry=registry,
                          tokens=TokenStore(fail.Keyring()), models_dir=models_dir,
                          probe_hardware=lambda: Hardware(cpu=CpuFacts(4, 8), ram_total_bytes=16 << 30,
                                                          ram_available_bytes=12 << 30))
    qtbot.addWidget(window)
    try:
        disguised = tmp_path / "model.gguf"
        disguised.write_bytes(hostile_files(canary)["pickle_protocol_4"])
        window.import_file(disguised)
        qtbot.waitUntil(lambda: DANGER in window.installed_status.text(), timeout=10_000)
        assert registry.all() == []
    finally:
        downloads.shutdown()


# ------------------------------------------------------------------ download and listings


def test_hub_listings_offer_only_gguf_files(tmp_path: Path, tiny_gguf: Path) -> None:
    files = [HubFile(f"model{suffix}", tiny_gguf) for suffix in (*SUFFIXES, ".safetensors")]
    files.append(HubFile("model.Q8_0.gguf", tiny_gguf))
    with HubServer([HubRepo("acme/Mixed", files)]) as hub:
        details = HubClient(endpoint=hub.endpoint).details("acme/Mixed")
    assert [part.name for option in details.options for part in option.parts] == ["model.Q8_0.gguf"]


def test_a_download_named_like_a_pickle_is_refused_before_any_request(tmp_path: Path, tiny_gguf: Path) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    registry = ModelRegistry(models_dir / "models.json")
    with HubServer([HubRepo("acme/Torch", [HubFile("pytorch_model.bin", tiny_gguf)])]) as hub:
        remote = RemoteFile("pytorch_model.bin", tiny_gguf.stat().st_size, HubFile("x", tiny_gguf).sha256)
        with pytest.raises(CodeCarryingFileError, match="pytorch_model.bin. This is a PyTorch/pickle file"):
            ModelDownloader(models_dir, registry, endpoint=hub.endpoint).download(
                ModelOption("acme/Torch", "F16", (remote,), COMMIT))
        assert hub.log == []
    assert list(models_dir.iterdir()) == [] and registry.all() == []


def test_a_pickle_served_as_gguf_is_stopped_at_its_first_bytes(tmp_path: Path, canary: Path) -> None:
    disguised = tmp_path / "served.gguf"
    disguised.write_bytes(hostile_files(canary)["pickle_protocol_4"] + os.urandom(32 << 20))
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    registry = ModelRegistry(models_dir / "models.json")
    with HubServer([HubRepo("acme/Disguised-GGUF", [HubFile("disguised.Q4_K_M.gguf", disguised)])]) as hub:
        option = HubClient(endpoint=hub.endpoint).details("acme/Disguised-GGUF").options[0]
        with pytest.raises(CodeCarryingFileError, match="its name says GGUF but its contents do not"):
            ModelDownloader(models_dir, registry, endpoint=hub.endpoint).download(option)
        assert hub.bytes_sent < 16 << 20  # far from the whole 32 MB (socket buffers hold a few MB)
    assert [path for path in models_dir.rglob("*") if path.is_file()] == []  # no part, no note
    assert registry.all() == []


def test_a_pickle_left_by_an_earlier_download_is_deleted_not_registered(tmp_path: Path, canary: Path) -> None:
    disguised = tmp_path / "served.gguf"
    disguised.write_bytes(hostile_files(canary)["torch_zip"])
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    registry = ModelRegistry(models_dir / "models.json")
    with HubServer([HubRepo("acme/Old-GGUF", [HubFile("old.Q4_K_M.gguf", disguised)])]) as hub:
        option = HubClient(endpoint=hub.endpoint).details("acme/Old-GGUF").options[0]
        downloader = ModelDownloader(models_dir, registry, endpoint=hub.endpoint)
        finished = downloader.target_folder(option) / "old.Q4_K_M.gguf"
        finished.parent.mkdir(parents=True)
        finished.write_bytes(disguised.read_bytes())  # what a Hearth without this check fetched
        with pytest.raises(CodeCarryingFileError):
            downloader.download(option)
        assert not [entry for entry in hub.log if entry[0] == "GET" and "/resolve/" in entry[1]]
    assert not finished.exists() and registry.all() == []
