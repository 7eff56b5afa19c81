"""The Settings dialog: where models run, and how replies are sampled."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gui.sampling_fields import SamplingFields
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


class SettingsDialog(QDialog):
    """Edits a copy of the settings; :meth:`result_settings` returns it after OK."""

    def __init__(
        self,
        settings: Settings,
        *,
        max_threads: int,
        gpus: tuple[GpuDevice, ...] = (),
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

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(engine_box)
        layout.addWidget(sampling_box)
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
        )
