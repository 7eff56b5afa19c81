"""The model picker: which model answers the open conversation, the local one or a provider's.

Its choices are keys: ``LOCAL`` (the model loaded on this computer),
``provider:<id>`` (a saved provider's model, see ``model_store.providers``)
and ``MANAGE`` (open File › Providers…).
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QComboBox, QWidget

from model_store.providers import Provider

LOCAL = "local"
MANAGE = "manage-providers"
PROVIDER_PREFIX = "provider:"


def provider_key(provider_id: str) -> str:
    """The picker's (and a conversation's ``model``) key for a provider's model."""
    return PROVIDER_PREFIX + provider_id


def provider_id_of(key: str) -> str | None:
    """The provider a key names, or None for a local model."""
    return key[len(PROVIDER_PREFIX):] if key.startswith(PROVIDER_PREFIX) else None


class ModelPicker(QComboBox):
    """A drop-down of the local model and every provider's model.

    Signals:
        chosen(str): the user picked a choice (its key); the window decides what that means.
    """

    chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Model")
        self.setToolTip("Which model answers this conversation: the one on this computer, or a provider's")
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self._current = LOCAL
        self.activated.connect(self._on_activated)

    def show_choices(self, local_name: str, providers: Sequence[Provider], current: str) -> None:
        """List the local model (``local_name``), each provider's model, and "Providers…"; select ``current``."""
        self.blockSignals(True)
        self.clear()
        self.addItem(f"{local_name or 'Local model'} · this computer", LOCAL)
        for provider in providers:
            self.addItem(f"{provider.model} · {provider.name}", provider_key(provider.id))
        self.addItem("Providers…", MANAGE)
        self.blockSignals(False)
        self.select(current)

    def select(self, key: str) -> None:
        """Show ``key`` as the current choice (the local model if it is not listed)."""
        index = self.findData(key)
        self._current = key if index >= 0 else LOCAL
        self.setCurrentIndex(index if index >= 0 else 0)

    @Slot(int)
    def _on_activated(self, index: int) -> None:
        key = self.itemData(index)
        if key == MANAGE:
            self.select(self._current)  # "Providers…" is an action, not a choice
        else:
            self._current = key
        self.chosen.emit(key)
