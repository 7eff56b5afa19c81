"""Settings survive a restart, a damaged file falls back to defaults, and older files are migrated."""

from __future__ import annotations

import json
from dataclasses import asdict, fields, replace

from gui.preferences import sampling_params
from inference.engine import SamplingParams
from model_store.paths import AppPaths
from model_store.settings import (
    MIGRATIONS,
    SETTINGS_VERSION,
    MeasuredThreads,
    Settings,
    SettingsStore,
    migrate,
)


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


def test_version_1_settings_lose_their_measured_threads_and_keep_everything_else(app_paths: AppPaths) -> None:
    # What Hearth 1 wrote after measuring 1 thread on a busy 2-core machine (issue 8).
    version_1 = {
        "version": 1, "demo_notice_dismissed": True, "device": "cpu", "n_threads": None, "context_length": 8192,
        "state_cache_mb": 512, "measured_threads": {"2c2t-avx2,avx512f": 1}, "temperature": 0.3, "top_p": 0.9,
        "top_k": 20, "min_p": 0.1, "repeat_penalty": 1.2, "seed": 5, "max_tokens": 300,
    }
    app_paths.settings_file.write_text(json.dumps(version_1), encoding="utf-8")
    settings = SettingsStore(app_paths.settings_file).load()
    assert settings.version == SETTINGS_VERSION == 2
    assert settings.measured_threads == {}
    kept = {key: value for key, value in version_1.items() if key not in ("version", "measured_threads")}
    assert {key: getattr(settings, key) for key in kept} == kept


def test_a_file_without_a_version_is_migrated_as_version_1() -> None:
    assert migrate({"measured_threads": {"4c8t-avx2": 3}, "top_k": 7}) == {"version": 2, "top_k": 7}


def test_measured_threads_are_stored_with_their_speed_and_model(app_paths: AppPaths) -> None:
    store = SettingsStore(app_paths.settings_file)
    measured = MeasuredThreads(threads=2, tokens_per_s=31.5, model="gemma-3-270m-it-Q4_K_M.gguf",
                               model_size=253_000_000)
    store.save(Settings(measured_threads={"2c2t-avx2": {"gemma-3-270m-it-Q4_K_M.gguf:253000000": measured}}))
    assert SettingsStore(app_paths.settings_file).load().measured_threads == {
        "2c2t-avx2": {"gemma-3-270m-it-Q4_K_M.gguf:253000000": measured}}


def test_a_damaged_measurement_is_left_out(app_paths: AppPaths) -> None:
    good = {"threads": 4, "tokens_per_s": 20.0, "model": "a.gguf", "model_size": 10}
    app_paths.settings_file.write_text(json.dumps({"version": 2, "measured_threads": {
        "4c8t-avx2": {"a.gguf:10": good, "b.gguf:5": {"threads": "many"}, "c.gguf:1": 3}, "8c8t-": 7,
    }}), encoding="utf-8")
    assert SettingsStore(app_paths.settings_file).load().measured_threads == {
        "4c8t-avx2": {"a.gguf:10": MeasuredThreads(**good)}}


def test_the_sampling_defaults_are_the_engines() -> None:
    engine = SamplingParams()
    shared = [item.name for item in fields(SamplingParams) if hasattr(Settings, item.name)]
    assert shared == ["temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "max_tokens"]
    assert {name: getattr(Settings(), name) for name in shared} == {name: getattr(engine, name) for name in shared}
    assert sampling_params(Settings()) == engine


def test_every_older_version_has_a_migration() -> None:
    assert sorted(MIGRATIONS) == list(range(1, SETTINGS_VERSION))


MEASURED = {"2c2t-avx2": {"a.gguf:10": {"threads": 2, "tokens_per_s": 30.0, "model": "a.gguf", "model_size": 10}}}


def test_the_version_in_the_file_decides_the_migration(app_paths: AppPaths) -> None:
    for version, kept in ((1, {}), (2, {"2c2t-avx2": {"a.gguf:10": MeasuredThreads(2, 30.0, "a.gguf", 10)}})):
        app_paths.settings_file.write_text(json.dumps({"version": version, "measured_threads": MEASURED}),
                                           encoding="utf-8")
        assert SettingsStore(app_paths.settings_file).load().measured_threads == kept


def test_an_older_file_is_saved_in_this_version(app_paths: AppPaths) -> None:
    app_paths.settings_file.write_text(json.dumps({"version": 1, "top_k": 7, "measured_threads": {"4c": 3}}),
                                       encoding="utf-8")
    store = SettingsStore(app_paths.settings_file)
    store.save(replace(store.load(), temperature=0.2))
    saved = json.loads(app_paths.settings_file.read_text(encoding="utf-8"))
    assert saved == {**asdict(Settings(top_k=7, temperature=0.2)), "version": SETTINGS_VERSION}
    store.save(Settings(version=1))  # a stale version in the object is never written
    assert json.loads(app_paths.settings_file.read_text(encoding="utf-8"))["version"] == SETTINGS_VERSION


def test_a_newer_file_is_read_as_it_is_and_a_save_keeps_what_this_version_does_not_know(app_paths: AppPaths) -> None:
    newer = {
        "version": SETTINGS_VERSION + 1, "temperature": 0.3, "top_k": 12, "measured_threads": MEASURED,
        "device": {"kind": "npu", "index": 0},  # a value this version cannot read
        "chat_theme": "solarized",  # a setting this version does not have
    }
    app_paths.settings_file.write_text(json.dumps(newer), encoding="utf-8")
    store = SettingsStore(app_paths.settings_file)
    settings = store.load()
    assert (settings.version, settings.temperature, settings.top_k) == (SETTINGS_VERSION + 1, 0.3, 12)
    assert settings.device == "auto" and settings.measured_threads  # not migrated backwards: measurements kept
    store.save(replace(settings, temperature=0.9))
    saved = json.loads(app_paths.settings_file.read_text(encoding="utf-8"))
    assert saved["version"] == SETTINGS_VERSION + 1
    assert saved["chat_theme"] == "solarized" and saved["device"] == {"kind": "npu", "index": 0}
    assert (saved["temperature"], saved["top_k"], saved["measured_threads"]) == (0.9, 12, MEASURED)
