"""The Settings and Conversation settings dialogs return what the user set."""

from __future__ import annotations

from gui.chat_view import ChatView, is_dark
from gui.conversation_dialog import ConversationDialog
from gui.preferences import engine_preferences
from gui.settings_dialog import SettingsDialog
from gui.theme import dark_palette
from inference.engine import SamplingParams
from inference.hardware import GpuDevice
from model_store.settings import Settings


def test_conversation_dialog_presets_and_values(qtbot) -> None:
    presets = {"Terse": {"system_prompt": "Answer in one line.", "temperature": 0.1, "max_tokens": 64}}
    dialog = ConversationDialog(system_prompt="", sampling=SamplingParams(), presets=presets,
                                model_name="Qwen 0.5B", uses_model=False)
    qtbot.addWidget(dialog)
    dialog._apply_preset(dialog.preset.findData("Terse"))
    assert dialog.system_prompt() == "Answer in one line."
    values = dialog.sampling_values()
    assert values["temperature"] == 0.1 and values["max_tokens"] == 64 and values["top_k"] == 40
    assert dialog.keep_model.text().endswith("Qwen 0.5B") and not dialog.keep_model.isChecked()


def test_the_thinking_choice_shows_only_for_a_thinking_model(qtbot) -> None:
    plain = ConversationDialog(system_prompt="", sampling=SamplingParams(), presets={}, model_name="M",
                               uses_model=False)
    qtbot.addWidget(plain)
    assert plain.thinking is None and "thinking" not in plain.sampling_values()
    qwen = ConversationDialog(system_prompt="", sampling=SamplingParams(thinking="off"),
                              presets={"Deep": {"thinking": "on"}}, model_name="Qwen3", uses_model=False,
                              thinking_format="think-tags")
    qtbot.addWidget(qwen)
    assert qwen.thinking.currentText() == "Off" and qwen.sampling_values()["thinking"] == "off"
    qwen._apply_preset(qwen.preset.findData("Deep"))
    assert qwen.sampling_values()["thinking"] == "on"
    oss = ConversationDialog(system_prompt="", sampling=SamplingParams(), presets={}, model_name="gpt-oss",
                             uses_model=False, thinking_format="harmony")
    qtbot.addWidget(oss)
    assert oss.sampling_values()["thinking"] is None
    oss.thinking.setCurrentIndex(oss.thinking.findData("high"))
    assert oss.sampling_values()["thinking"] == "high"


def test_settings_dialog_round_trip(qtbot) -> None:
    settings = Settings(device="cpu", n_threads=None, context_length=8192, seed=None, temperature=0.3)
    dialog = SettingsDialog(settings, max_threads=8)
    qtbot.addWidget(dialog)
    assert dialog.result_settings() == settings  # nothing edited, nothing changed
    dialog.threads.setValue(3)
    dialog.seed.setValue(42)
    result = dialog.result_settings()
    assert (result.n_threads, result.seed, result.context_length, result.device) == (3, 42, 8192, "cpu")


def test_settings_choose_the_gpu_and_its_layers(qtbot) -> None:
    gib = 1 << 30
    gpus = (GpuDevice("CUDA", 0, "NVIDIA RTX 3070", 8 * gib, 7 * gib),
            GpuDevice("CUDA", 1, "NVIDIA RTX 4090", 24 * gib, 20 * gib))
    dialog = SettingsDialog(Settings(), max_threads=8, gpus=gpus)
    qtbot.addWidget(dialog)
    assert [dialog.gpu.itemText(i) for i in range(dialog.gpu.count())] == [
        "Automatic (a discrete GPU first, then the most free memory)", "NVIDIA RTX 3070 (7.0 GB free)", "NVIDIA RTX 4090 (20.0 GB free)"]
    assert dialog.result_settings() == Settings()
    dialog.gpu.setCurrentIndex(1)
    dialog.gpu_layers.setValue(20)
    result = dialog.result_settings()
    assert (result.gpu, result.n_gpu_layers) == ("NVIDIA RTX 3070#0", 20)
    assert engine_preferences(result).gpu == "NVIDIA RTX 3070#0" and engine_preferences(result).n_gpu_layers == 20

    # A GPU chosen earlier that is not there now stays listed; without GPUs the fields are off.
    again = SettingsDialog(result, max_threads=8)
    qtbot.addWidget(again)
    assert again.gpu.currentText() == "NVIDIA RTX 3070 (not found now)" and not again.gpu.isEnabled()
    assert again.result_settings() == result


def test_the_chat_view_follows_a_dark_palette(qtbot) -> None:
    view = ChatView()
    qtbot.addWidget(view)
    assert not is_dark(view.palette())
    view.setPalette(dark_palette())
    assert is_dark(view.palette())
    code = "```python\nx = 1\n```"
    light = view._renderer.render_block(code)
    view.refresh_theme()
    assert view._renderer.render_block(code) != light  # dark code colours
