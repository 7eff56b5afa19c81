"""The GUI thread never waits for the disk or the keyring: its heartbeat stays on time while they are slow for real.

The measurements live in tests/benchmarks/stalls.py (its ``stall_figures``
reports them against the issue's limit of 50 ms). Here a stall only fails a
test when it is as long as half the slow operation itself: the window waited
for it. Speed figures are not asserted in unit tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gui.background import LatestSaver
from gui.download_manager import DownloadManager
from gui.model_manager import ModelManager
from inference.hardware import CpuFacts, Hardware
from model_store.credentials import TokenStore
from model_store.downloads import ModelDownloader
from model_store.hub import HubClient
from model_store.registry import ModelRegistry
from model_store.settings import Settings, SettingsStore
from tests.benchmarks import stalls

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("does not support raise")]


def test_opening_the_model_manager_with_a_locked_keyring_keeps_the_window_on_time(qtbot, qapp, tmp_path: Path) -> None:
    why_not = stalls.keyring_available()
    if why_not:
        pytest.skip(why_not)
    figures = stalls.keyring_stalls(qapp, tmp_path)
    assert figures["stall_max_ms"] < stalls.KEYRING_WATCH_S * 1000 / 2, figures
    assert figures["ticks"] > 100  # the heartbeat ran the whole time
    if figures["prompt_stays_open"]:  # Xvfb shows gcr-prompter's unlock dialog: the keyring call is still waiting
        assert figures["tab_says_checking"] and figures["keyring_call_still_waiting"], figures
    else:  # no unlock prompt can be shown here: the keyring refuses at once, and the tab says what that means
        assert "kept only until Hearth quits" in figures["tab_says"] or figures["tab_says_checking"], figures


def test_the_token_tab_reads_a_real_unlocked_keyring_in_the_background(qtbot, secret_service, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    registry = ModelRegistry(models_dir / "models.json")
    downloads = DownloadManager(ModelDownloader(models_dir, registry, endpoint="http://127.0.0.1:9"))
    hardware = Hardware(cpu=CpuFacts(4, 8), ram_total_bytes=16 << 30, ram_available_bytes=12 << 30)
    window = ModelManager(hub=HubClient(endpoint="http://127.0.0.1:9"), downloads=downloads, registry=registry,
                          tokens=TokenStore(secret_service), probe_hardware=lambda: hardware, models_dir=models_dir)
    qtbot.addWidget(window)
    try:
        qtbot.waitUntil(lambda: window.token_status.text() == "No token is saved.", timeout=10_000)
        window.token_box.setText("hf_TabToken123")
        window._save_token()
        assert window.token_box.text() == ""  # the field is cleared at once, the keyring answers later
        qtbot.waitUntil(lambda: "saved in your system keyring" in window.token_status.text(), timeout=10_000)
        assert secret_service.get_password("Hearth", "huggingface-token") == "hf_TabToken123"
        window._clear_token()
        qtbot.waitUntil(lambda: window.token_status.text() == "No token is saved.", timeout=10_000)
    finally:
        downloads.shutdown()


def test_a_locked_database_never_holds_the_window(qtbot, qapp, tmp_path: Path) -> None:
    figures = stalls.database_stalls(qapp, tmp_path)
    # The lock really held the writer: a flush on another thread waited for it, the open waited for the rename.
    assert figures["writes_waited_behind_lock"] and figures["flush_waited_ms"] >= 0.9 * stalls.HOLD_S * 1000, figures
    assert figures["open_deferred_until_written"], figures
    assert figures["stall_max_ms"] < stalls.HOLD_S * 1000 / 2, figures
    assert figures["rename_saved"] and figures["write_errors"] == 0, figures


def test_settings_are_saved_off_the_gui_thread_newest_last(qtbot, qapp, tmp_path: Path) -> None:
    figures = stalls.settings_stalls(qapp, tmp_path)
    assert figures["gui_thread_fsyncs"] == 0 and figures["fsyncs"] == 2, figures
    assert figures["saved_last_settings"] and figures["file_is_valid_json"], figures
    assert figures["stall_max_ms"] < stalls.SLOW_FSYNC_S * 1000 / 2, figures


def test_a_settings_save_that_fails_is_reported_and_the_next_one_lands(qtbot, tmp_path: Path) -> None:
    blocker = tmp_path / "config"
    blocker.write_text("a file where the settings folder should be")
    saver = LatestSaver(SettingsStore(blocker / "settings.json").save)
    with qtbot.waitSignal(saver.failed, timeout=5_000) as failed:
        saver.save(Settings(temperature=0.1))
    assert failed.args[0]
    assert saver.wait(5)
    blocker.unlink()
    saver.save(Settings(temperature=0.4))
    assert saver.wait(5)
    assert SettingsStore(blocker / "settings.json").load().temperature == 0.4
