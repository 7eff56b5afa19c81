"""File › Providers…: the remote OpenAI-compatible servers Hearth can answer with (vLLM, llama-server, Ollama…).

The list dialog adds, edits and removes providers; the editor asks for a
name, a base URL, an API key and a model picked from the server's own list.
Everything that touches the network, the keyring or the disk runs off the GUI
thread (:class:`gui.background.BackgroundCall`).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gui.background import BackgroundCall
from inference.remote_engine import ASSUMED_CONTEXT, host_of, remote_models
from model_store.providers import Provider, ProviderStore, base_url_problem, new_provider_id, normalize_base_url

ERROR_STYLE = "color: #c62828;"


class ProviderEditor(QDialog):
    """Adds a provider (``provider=None``) or edits one; OK saves it through the store, in the background.

    Signals:
        saved(object): the :class:`Provider` as saved (the dialog then closes with accept()).
        models_listed(list): the model ids the server listed after "Fetch models".
        problem_shown(str): a sentence now shown in the dialog (a failure, or a field to fix).
    """

    saved = Signal(object)
    models_listed = Signal(list)
    problem_shown = Signal(str)

    def __init__(self, store: ProviderStore, provider: Provider | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self._provider = provider
        self.setWindowTitle("Edit provider" if provider else "Add provider")
        self.setAccessibleName(self.windowTitle())
        self.name = QLineEdit(provider.name if provider else "")
        self.name.setAccessibleName("Name")
        self.name.setPlaceholderText("e.g. Lab GPU box")
        self.base_url = QLineEdit(provider.base_url if provider else "")
        self.base_url.setAccessibleName("Base URL")
        self.base_url.setPlaceholderText("http://localhost:8000/v1")
        self.api_key = QLineEdit()
        self.api_key.setAccessibleName("API key")
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setPlaceholderText("Leave empty to keep the saved key" if provider
                                        else "Optional: only if the server asks for one")
        self.model = QComboBox()
        self.model.setEditable(True)  # a model the server does not list (or before fetching) can be typed
        self.model.setAccessibleName("Model")
        self.model.setMinimumContentsLength(24)
        if provider and provider.model:
            self.model.addItem(provider.model)
        self.context_window = QSpinBox()
        self.context_window.setAccessibleName("Context window")
        self.context_window.setRange(0, 10_000_000)
        self.context_window.setSingleStep(1024)
        self.context_window.setSuffix(" tokens")
        self.context_window.setGroupSeparatorShown(True)
        self.context_window.setSpecialValueText(f"Not known ({ASSUMED_CONTEXT:,} tokens assumed)")
        self.context_window.setToolTip("How many tokens the server gives the model: Hearth fits your documents "
                                       "into it. Fetch models fills it in when the server says (vLLM does).")
        self.context_window.setValue(provider.context_window if provider else 0)
        self._windows: dict[str, int] = {}
        self.model.currentTextChanged.connect(self._model_chosen)
        self.fetch = QPushButton("Fetch models")
        self.fetch.setAccessibleName("Fetch models")
        self.fetch.clicked.connect(self._fetch_models)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(self.fetch)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Status")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form = QFormLayout()
        form.addRow("Name", self.name)
        form.addRow("Base URL", self.base_url)
        form.addRow("API key", self.api_key)
        form.addRow("Model", model_row)
        form.addRow("Context window", self.context_window)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._save)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self._lister = BackgroundCall(self)
        self._lister.done.connect(self._models_arrived)
        self._lister.failed.connect(self._show_problem)
        self._saver = BackgroundCall(self)
        self._saver.done.connect(self._save_done)
        self._saver.failed.connect(self._save_failed)
        self.resize(520, 0)

    def wait(self, timeout: float = 5.0) -> None:
        """Wait for a fetch or a save still running (tests and shutdown)."""
        self._lister.wait(timeout)
        self._saver.wait(timeout)

    @Slot()
    def _fetch_models(self) -> None:
        url = normalize_base_url(self.base_url.text())
        problem = base_url_problem(url)
        if problem:
            self._show_problem(problem)
            return
        typed_key = self.api_key.text().strip()
        saved_id = self._provider.id if self._provider else None
        name = self.name.text().strip()
        store = self._store

        def fetch() -> dict[str, int]:
            key = typed_key or (store.api_key(saved_id) if saved_id else None)
            return remote_models(url, key, name=name)

        self.fetch.setEnabled(False)
        self._show_status(f"Asking {name or host_of(url)} for its models…")
        self._lister.run(fetch)

    @Slot(object)
    def _models_arrived(self, models: dict[str, int]) -> None:
        self.fetch.setEnabled(True)
        self._windows = dict(models)
        ids = sorted(models)
        current = self.model.currentText().strip()
        self.model.clear()
        self.model.addItems(ids)
        if current in ids:
            self.model.setCurrentText(current)
        elif ids:
            self.model.setCurrentIndex(0)
        else:
            self.model.setEditText(current)
        count = len(ids)
        self._show_status(f"{count} model{'s' if count != 1 else ''} available." if count
                          else "The server lists no models; type the model's name.")
        self.models_listed.emit(list(ids))

    @Slot(str)
    def _model_chosen(self, model: str) -> None:
        """A model of the fetched list: show its context window as the server said it (0: not said)."""
        if model.strip() in self._windows:
            self.context_window.setValue(self._windows[model.strip()])

    @Slot()
    def _save(self) -> None:
        url = normalize_base_url(self.base_url.text())
        problem = base_url_problem(url)
        model = self.model.currentText().strip()
        if not problem and not model:
            problem = "Choose a model: press Fetch models, or type the model's name."
        if problem:
            self._show_problem(problem)
            return
        provider = Provider(id=self._provider.id if self._provider else new_provider_id(),
                            name=self.name.text().strip() or host_of(url), base_url=url, model=model,
                            context_window=self.context_window.value())
        typed_key = self.api_key.text().strip()
        # Empty when editing keeps the saved key; empty when adding means the server needs none.
        key = typed_key or None
        store = self._store

        def save() -> Provider:
            store.save(provider, key)
            return provider

        self.buttons.setEnabled(False)
        self._show_status("Saving…")
        self._saver.run(save)

    @Slot(object)
    def _save_done(self, provider: Provider) -> None:
        self.buttons.setEnabled(True)
        self.api_key.clear()
        self.saved.emit(provider)
        self.accept()

    @Slot(str)
    def _save_failed(self, sentence: str) -> None:
        self.buttons.setEnabled(True)
        self._show_problem(sentence)

    @Slot(str)
    def _show_problem(self, sentence: str) -> None:
        self.fetch.setEnabled(True)
        self.status.setStyleSheet(ERROR_STYLE)
        self.status.setText(sentence)
        self.problem_shown.emit(sentence)

    def _show_status(self, text: str) -> None:
        self.status.setStyleSheet("")
        self.status.setText(text)


class ProvidersDialog(QDialog):
    """The saved providers, with Add, Edit and Remove.

    Signals:
        changed(): a provider was added, edited or removed (model pickers refresh their lists).
        problem_shown(str): a sentence now shown in the dialog (removing failed).
    """

    changed = Signal()
    problem_shown = Signal(str)

    def __init__(self, store: ProviderStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self.editor: ProviderEditor | None = None
        self.setWindowTitle("Providers")
        self.setAccessibleName("Providers")
        intro = QLabel("Servers with an OpenAI-compatible API (vLLM, llama.cpp's llama-server, Ollama, "
                       "LM Studio, hosted APIs) that can answer your conversations. API keys are kept "
                       "in your system's keyring only.")
        intro.setWordWrap(True)
        self.list = QListWidget()
        self.list.setAccessibleName("Saved providers")
        self.list.itemSelectionChanged.connect(self._selection_changed)
        self.list.itemDoubleClicked.connect(self._edit)
        self.add = QPushButton("Add…")
        self.add.setAccessibleName("Add provider")
        self.add.clicked.connect(self._add)
        self.edit = QPushButton("Edit…")
        self.edit.setAccessibleName("Edit provider")
        self.edit.clicked.connect(self._edit)
        self.remove = QPushButton("Remove")
        self.remove.setAccessibleName("Remove provider")
        self.remove.clicked.connect(self._remove)
        side = QVBoxLayout()
        for button in (self.add, self.edit, self.remove):
            side.addWidget(button)
        side.addStretch(1)
        row = QHBoxLayout()
        row.addWidget(self.list, 1)
        row.addLayout(side)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setStyleSheet(ERROR_STYLE)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addWidget(close)
        self._remover = BackgroundCall(self)
        self._remover.done.connect(self._removed)
        self._remover.failed.connect(self._remove_failed)
        self.refresh()
        self.resize(560, 340)

    def wait(self, timeout: float = 5.0) -> None:
        """Wait for a removal (or the open editor's work) still running (tests and shutdown)."""
        self._remover.wait(timeout)
        if self.editor is not None:
            self.editor.wait(timeout)

    def refresh(self, select_id: str | None = None) -> None:
        """Show the store's providers again, selecting ``select_id`` (else the first)."""
        self.list.clear()
        for provider in self._store.list():
            item = QListWidgetItem(f"{provider.name} — {provider.model} ({host_of(provider.base_url)})")
            item.setData(Qt.ItemDataRole.UserRole, provider.id)
            self.list.addItem(item)
            if provider.id == select_id:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None and self.list.count():
            self.list.setCurrentRow(0)
        self._selection_changed()

    def selected_id(self) -> str | None:
        """The id of the selected provider, or None."""
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    @Slot()
    def _selection_changed(self) -> None:
        chosen = self.selected_id() is not None
        self.edit.setEnabled(chosen)
        self.remove.setEnabled(chosen)

    @Slot()
    def _add(self) -> None:
        self._open_editor(None)

    @Slot()
    def _edit(self) -> None:
        provider_id = self.selected_id()
        provider = self._store.get(provider_id) if provider_id else None
        if provider is not None:
            self._open_editor(provider)

    def _open_editor(self, provider: Provider | None) -> None:
        self.editor = ProviderEditor(self._store, provider, self)
        self.editor.saved.connect(self._saved)
        self.editor.open()  # window-modal without a nested event loop

    @Slot(object)
    def _saved(self, provider: Provider) -> None:
        self.refresh(select_id=provider.id)
        self.changed.emit()

    @Slot()
    def _remove(self) -> None:
        provider_id = self.selected_id()
        if provider_id is None:
            return
        store = self._store
        self.remove.setEnabled(False)
        self._remover.run(lambda: store.remove(provider_id))

    @Slot(object)
    def _removed(self, _provider) -> None:
        self.status.clear()
        self.refresh()
        self.changed.emit()

    @Slot(str)
    def _remove_failed(self, sentence: str) -> None:
        self._selection_changed()
        self.status.setText(sentence)
        self.problem_shown.emit(sentence)
