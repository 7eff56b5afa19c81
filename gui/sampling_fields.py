"""The reply-sampling numbers as form fields, shared by the Settings and Conversation settings dialogs."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QDoubleSpinBox, QFormLayout, QSpinBox

# (field, label, minimum, maximum, step): an int step makes an integer field.
FIELDS = [
    ("temperature", "Temperature", 0.0, 2.0, 0.05),
    ("top_p", "Top-p", 0.0, 1.0, 0.05),
    ("top_k", "Top-k", 0, 1000, 1),
    ("min_p", "Min-p", 0.0, 1.0, 0.01),
    ("repeat_penalty", "Repeat penalty", 1.0, 2.0, 0.05),
    ("max_tokens", "Longest reply (tokens)", 16, 32768, 64),
]


class SamplingFields:
    """One spin box per sampling number, added to a form; ``values()`` reads them back."""

    def __init__(self, form: QFormLayout, source: Any) -> None:
        self.boxes: dict[str, QSpinBox | QDoubleSpinBox] = {}
        for name, label, low, high, step in FIELDS:
            box = QSpinBox() if isinstance(step, int) else QDoubleSpinBox()
            box.setRange(low, high)
            box.setSingleStep(step)
            box.setValue(getattr(source, name))
            box.setAccessibleName(label)
            self.boxes[name] = box
            form.addRow(label, box)

    def values(self) -> dict[str, float | int]:
        """The numbers as edited, by field name (the names of SamplingParams and Settings)."""
        return {name: box.value() for name, box in self.boxes.items()}

    def set_values(self, values: dict[str, Any]) -> None:
        """Set the fields that ``values`` has numbers for."""
        for name, box in self.boxes.items():
            if isinstance(values.get(name), (int, float)):
                box.setValue(values[name])
