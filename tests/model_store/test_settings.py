"""Settings survive a restart, and a damaged file falls back to defaults."""

from __future__ import annotations

from model_store.paths import AppPaths
from model_store.settings import Settings, SettingsStore


def test_settings_round_trip(app_paths: AppPaths) -> None:
    store = SettingsStore(app_paths.settings_file)
    assert store.load() == Settings()
    store.save(Settings(demo_notice_dismissed=True))
    assert SettingsStore(app_paths.settings_file).load().demo_notice_dismissed is True


def test_damaged_or_newer_settings_file(app_paths: AppPaths) -> None:
    app_paths.settings_file.write_text("\x00garbage", encoding="utf-8")
    assert SettingsStore(app_paths.settings_file).load() == Settings()
    app_paths.settings_file.write_text('{"demo_notice_dismissed": true, "from_the_future": 1}', encoding="utf-8")
    assert SettingsStore(app_paths.settings_file).load().demo_notice_dismissed is True
