"""One conversation's own settings: its system prompt and how its replies are sampled, with named presets."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui.sampling_fields import SamplingFields
from inference.engine import SamplingParams

# The "Thinking" choices by the model's thinking format: (label, SamplingParams.thinking).
THINKING_CHOICES = {
    "think-tags": (("The model's default", None), ("On", "on"), ("Off", "off")),
    "harmony": (("The model's default", None), ("Low effort", "low"), ("Medium effort", "medium"),
                ("High effort", "high")),
}


class ConversationDialog(QDialog):
    """Edits a conversation's system prompt and sampling; applies and saves presets.

    Signals:
        preset_saved(str, dict): the user saved the current values under a name.
    """

    preset_saved = Signal(str, dict)

    def __init__(
        self,
        *,
        system_prompt: str,
        sampling: SamplingParams,
        presets: dict[str, dict[str, Any]],
        model_name: str,
        uses_model: bool,
        thinking_format: str = "",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Conversation settings")
        self.setAccessibleName("Conversation settings")
        self._presets = dict(presets)
        self.preset = QComboBox()
        self.preset.setAccessibleName("Preset")
        self.preset.addItem("Choose a preset…", None)
        for name in self._presets:
            self.preset.addItem(name, name)
        self.preset.activated.connect(self._apply_preset)
        save = QPushButton("Save as preset…")
        save.setAccessibleName("Save as preset")
        save.clicked.connect(self._save_preset)
        preset_row = QHBoxLayout()
        preset_row.addWidget(self.preset, 1)
        preset_row.addWidget(save)
        self.prompt = QPlainTextEdit(system_prompt)
        self.prompt.setAccessibleName("System prompt")
        self.prompt.setPlaceholderText("Instructions the model follows throughout this conversation (optional)")
        form = QFormLayout()
        form.addRow("Preset", preset_row)
        form.addRow("System prompt", self.prompt)
        self.keep_model = QCheckBox(f"Always answer this conversation with {model_name}")
        self.keep_model.setAccessibleName("Use this model for this conversation")
        self.keep_model.setChecked(uses_model)
        self.keep_model.setEnabled(bool(model_name))
        form.addRow("Model", self.keep_model)
        # Shown only for a model that thinks ("think-tags" or "harmony", ModelReady.thinking).
        self.thinking: QComboBox | None = None
        if thinking_format in THINKING_CHOICES:
            self.thinking = QComboBox()
            self.thinking.setAccessibleName("Thinking")
            self.thinking.setToolTip("Whether the model thinks before it answers (shown apart, never sent back)")
            for label, value in THINKING_CHOICES[thinking_format]:
                self.thinking.addItem(label, value)
            self._set_thinking(sampling.thinking)
            form.addRow("Thinking", self.thinking)
        self.numbers = SamplingFields(form, sampling)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)
        self.resize(520, 480)

    def system_prompt(self) -> str:
        """The system prompt as edited."""
        return self.prompt.toPlainText().strip()

    def sampling_values(self) -> dict[str, float | int | str | None]:
        """The sampling values as edited, by SamplingParams field name (``thinking`` when the choice is shown)."""
        values: dict[str, float | int | str | None] = dict(self.numbers.values())
        if self.thinking is not None:
            values["thinking"] = self.thinking.currentData()
        return values

    def _set_thinking(self, value: str | None) -> None:
        index = self.thinking.findData(value) if value is not None else 0
        self.thinking.setCurrentIndex(max(index, 0))

    @Slot(int)
    def _apply_preset(self, index: int) -> None:
        values = self._presets.get(self.preset.itemData(index))
        if not values:
            return
        self.prompt.setPlainText(str(values.get("system_prompt", "")))
        self.numbers.set_values(values)
        if self.thinking is not None and "thinking" in values:
            self._set_thinking(values["thinking"])

    @Slot()
    def _save_preset(self) -> None:
        name, ok = QInputDialog.getText(self, "Save preset", "Name of the preset:")
        if ok and name.strip():
            values = {"system_prompt": self.system_prompt(), **self.sampling_values()}
            self._presets[name.strip()] = values
            if self.preset.findData(name.strip()) < 0:
                self.preset.addItem(name.strip(), name.strip())
            self.preset_saved.emit(name.strip(), values)
