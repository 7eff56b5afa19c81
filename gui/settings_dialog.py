"""The Settings dialog: where models run, how replies are sampled, and the local API server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gui.background import BackgroundCall
from gui.sampling_fields import SamplingFields
from inference.api import is_loopback_host
from inference.hardware import GpuDevice
from model_store.settings import Settings

DEVICES = [("auto", "Automatic (the GPU for as much of the model as fits)"), ("cpu", "CPU"), ("gpu", "GPU")]


def _spin(minimum: int, maximum: int, value: int | None, *, step: int = 1, automatic: str = "") -> QSpinBox:
    """A spin box; with ``automatic``, its lowest value means 'let Hearth choose' and shows that text."""
    box = QSpinBox()
    box.setRange(minimum - step if automatic else minimum, maximum)
    box.setSingleStep(step)
    if automatic:
        box.setSpecialValueText(automatic)
    box.setValue(box.minimum() if value is None else value)
    return box


def _gpu_choice(gpus: tuple[GpuDevice, ...], chosen: str | None) -> QComboBox:
    """Automatic, then each GPU with its free memory; a saved GPU that is not there now stays listed as such."""
    box = QComboBox()
    box.addItem("Automatic (a discrete GPU first, then the most free memory)" if gpus else "No GPU Hearth can use was found", None)
    for gpu in gpus:
        box.addItem(f"{gpu.name} ({gpu.free_bytes / (1 << 30):.1f} GB free)", gpu.key)
    if chosen and chosen not in [gpu.key for gpu in gpus]:
        box.addItem(f"{chosen.rsplit('#', 1)[0]} (not found now)", chosen)
    box.setCurrentIndex(max(box.findData(chosen), 0) if chosen else 0)
    return box


class ApiServerBox(QGroupBox):
    """The "Local API server" group: on or off, where it listens, and its token (masked; Show, Copy, Regenerate).

    The token is asked of ``api_token`` only when the user shows or copies it, and never kept in the
    settings. Without ``api_token`` (no keyring, say) the token row says so and its buttons are disabled.
    """

    def __init__(self, settings: Settings, *, api_token: Callable[[], str] | None,
                 regenerate_api_token: Callable[[], str] | None) -> None:
        super().__init__("Local API server")
        self._api_token = api_token
        self._regenerate = regenerate_api_token
        form = QFormLayout(self)
        self.switch = QCheckBox("Let other programs on this computer use the model (OpenAI-compatible API)")
        self.switch.setChecked(settings.api_server_enabled)
        self.host = QLineEdit(settings.api_host)
        self.host.setPlaceholderText("127.0.0.1")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(settings.api_port)
        self.warning = QLabel("This address can be reached from other computers: anyone on your network who gets "
                              "the token can use the model.")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #b3261e;")
        self.address = QLabel()
        self.address.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.token = QLineEdit()
        self.token.setReadOnly(True)
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("•" * 16 if api_token else "Not available")
        self.show_token = QPushButton("Show")
        self.show_token.setCheckable(True)
        self.copy_token = QPushButton("Copy")
        self.regenerate = QPushButton("Regenerate")
        self.regenerate.setToolTip("Make a new token now; programs that use the old one are refused from then on.")
        for button in (self.show_token, self.copy_token):
            button.setEnabled(api_token is not None)
        self.regenerate.setEnabled(regenerate_api_token is not None)
        token_row = QHBoxLayout()
        for widget in (self.token, self.show_token, self.copy_token, self.regenerate):
            token_row.addWidget(widget)
        form.addRow(self.switch)
        form.addRow("Address", self.host)
        form.addRow("Port", self.port)
        form.addRow(self.warning)
        form.addRow("Clients connect to", self.address)
        form.addRow("Token", token_row)
        for label, widget in (("Local API server", self.switch), ("API address", self.host), ("API port", self.port),
                              ("API token", self.token)):
            widget.setAccessibleName(label)
        self.host.textChanged.connect(self._update)
        self.port.valueChanged.connect(self._update)
        self._keyring = BackgroundCall(self)
        self._keyring.done.connect(self._token_arrived)
        self._keyring.failed.connect(self._token_failed)
        self.show_token.toggled.connect(self._show)
        self.copy_token.clicked.connect(self._copy)
        self.regenerate.clicked.connect(self._regenerate_token)
        self._update()

    def host_value(self) -> str:
        """The address as entered, or the loopback default when empty."""
        return self.host.text().strip() or "127.0.0.1"

    def _update(self) -> None:
        host = self.host_value()
        self.warning.setHidden(is_loopback_host(host))
        shown = f"[{host}]" if ":" in host else host
        self.address.setText(f"http://{shown}:{self.port.value()}/v1")

    def _show(self, shown: bool) -> None:
        if shown and not self.token.text():
            self._ask_keyring("show", self._api_token)
        self.token.setEchoMode(QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password)
        self.show_token.setText("Hide" if shown else "Show")

    def _copy(self) -> None:
        if self.token.text():
            QGuiApplication.clipboard().setText(self.token.text())
        else:
            self._ask_keyring("copy", self._api_token)

    def _regenerate_token(self) -> None:
        self._ask_keyring("regenerate", self._regenerate)

    def _ask_keyring(self, then: str, read: Callable[[], str]) -> None:
        """Read (or replace) the token off the GUI thread: a keyring can take seconds to unlock."""
        for button in (self.show_token, self.copy_token, self.regenerate):
            button.setEnabled(False)
        self._keyring.run(lambda: (then, read()))

    @Slot(object)
    def _token_arrived(self, result: tuple[str, str]) -> None:
        then, token = result
        self._enable_token_buttons()
        self.token.setText(token)
        if then == "copy":
            QGuiApplication.clipboard().setText(token)

    @Slot(str)
    def _token_failed(self, sentence: str) -> None:
        self._enable_token_buttons()
        self.token.setPlaceholderText(f"The token could not be read: {sentence}")

    def _enable_token_buttons(self) -> None:
        for button in (self.show_token, self.copy_token):
            button.setEnabled(self._api_token is not None)
        self.regenerate.setEnabled(self._regenerate is not None)

    def wait(self, timeout: float = 5.0) -> None:
        """Wait for a keyring call still running (tests)."""
        self._keyring.wait(timeout)


class SettingsDialog(QDialog):
    """Edits a copy of the settings; :meth:`result_settings` returns it after OK.

    ``api_token`` gives the local API server's token when the user shows or copies it, and
    ``regenerate_api_token`` replaces it; the token itself never goes into the settings.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        max_threads: int,
        gpus: tuple[GpuDevice, ...] = (),
        api_token: Callable[[], str] | None = None,
        regenerate_api_token: Callable[[], str] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setAccessibleName("Settings")
        self._settings = settings

        self.device = QComboBox()
        for key, label in DEVICES:
            self.device.addItem(label, key)
        keys = [key for key, _ in DEVICES]
        self.device.setCurrentIndex(keys.index(settings.device) if settings.device in keys else 0)
        self.threads = _spin(1, max_threads, settings.n_threads, automatic="Automatic (one per core, measured in the background)")
        self.context = _spin(512, 131072, settings.context_length, step=512, automatic="Automatic (4,096)")
        self.gpu = _gpu_choice(gpus, settings.gpu)
        self.gpu_layers = _spin(0, 999, settings.n_gpu_layers, automatic="Automatic (as many as fit)")
        self.gpu_layers.setToolTip("How many of the model's layers llama.cpp puts on the GPU; the rest run on the "
                                   "CPU. 0 keeps the model off the GPU.")
        for widget in (self.gpu, self.gpu_layers):
            widget.setEnabled(bool(gpus))
        self.cache = _spin(0, 65536, settings.state_cache_mb, step=256)
        self.cache.setSuffix(" MB")
        engine_box = QGroupBox("Where models run (applies when the model reloads)")
        engine_form = QFormLayout(engine_box)
        engine_form.addRow("Device", self.device)
        engine_form.addRow("GPU", self.gpu)
        engine_form.addRow("GPU layers", self.gpu_layers)
        engine_form.addRow("CPU threads", self.threads)
        engine_form.addRow("Context length (tokens)", self.context)
        engine_form.addRow("Memory for other conversations", self.cache)
        note = QLabel("Hearth keeps recent conversations ready so switching back is instant; 0 turns this off.")
        note.setWordWrap(True)
        engine_form.addRow(note)

        sampling_box = QGroupBox("Replies")
        sampling_form = QFormLayout(sampling_box)
        self.sampling = SamplingFields(sampling_form, settings)
        self.seed = _spin(0, 2**31 - 1, settings.seed, automatic="Random")
        self.seed.setAccessibleName("Seed")
        sampling_form.addRow("Seed", self.seed)
        for label, widget in (("Device", self.device), ("GPU", self.gpu), ("GPU layers", self.gpu_layers),
                              ("CPU threads", self.threads),
                              ("Context length", self.context), ("Memory for other conversations", self.cache)):
            widget.setAccessibleName(label)

        self.api = ApiServerBox(settings, api_token=api_token, regenerate_api_token=regenerate_api_token)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(engine_box)
        layout.addWidget(sampling_box)
        layout.addWidget(self.api)
        layout.addWidget(buttons)

    def result_settings(self) -> Settings:
        """The settings as edited."""

        def automatic(box: QSpinBox) -> int | None:
            return None if box.specialValueText() and box.value() == box.minimum() else box.value()

        return replace(
            self._settings,
            device=self.device.currentData(),
            gpu=self.gpu.currentData(),
            n_gpu_layers=automatic(self.gpu_layers),
            n_threads=automatic(self.threads),
            context_length=automatic(self.context),
            state_cache_mb=self.cache.value(),
            seed=automatic(self.seed),
            **self.sampling.values(),
            api_server_enabled=self.api.switch.isChecked(),
            api_host=self.api.host_value(),
            api_port=self.api.port.value(),
        )
