"""The model manager: find GGUF models on the Hub, judge them for this machine, download, keep, delete, import.

Every network, disk, hashing and keyring call runs off the GUI thread
(BackgroundCall, DownloadManager); this window only shows what comes back.
The keyring counts: a locked one asks the user to unlock it and the call
waits for as long as that prompt is open.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gui.background import BackgroundCall
from gui.download_manager import DownloadManager, progress_text
from inference.embeddings import is_embedding_model
from inference.gguf_info import check_architecture_known, read_gguf_info
from inference.hardware import Hardware
from inference.selector import Preferences, Verdict, download_verdict, estimated_info
from model_store.credentials import TokenStore
from model_store.hub import HubClient, ModelOption, RepoDetails, RepoSummary
from model_store.model_files import refuse_code_carrying
from model_store.recommended import RECOMMENDED
from model_store.registry import InstalledModel, ModelRegistry

ROLE = Qt.ItemDataRole.UserRole
VERDICT_MARKS = {"gpu": "✔ GPU", "gpu_partial": "✔ GPU, partly", "cpu": "✔ CPU", "too_big": "✘ too big", "no_disk": "✘ no disk space"}
CHECKING_KEYRING = "Checking the system keyring… (if it is locked, it may be asking you to unlock it)"


@dataclass(frozen=True)
class TokenState:
    """What the token tab shows, read from the keyring off the GUI thread."""

    saved: bool
    persistent: bool
    problem: str

    @classmethod
    def read(cls, tokens: TokenStore) -> TokenState:
        """Ask ``tokens`` (this may wait for the keyring: call it off the GUI thread)."""
        saved = tokens.get() is not None
        return cls(saved=saved, persistent=tokens.persistent, problem=tokens.problem)

    def sentence(self) -> str:
        """The token tab's status line."""
        where = "in your system keyring" if self.persistent else "in memory only"
        state = f"A token is saved {where}." if self.saved else "No token is saved."
        return f"{state} {self.problem}".strip()


class ModelManager(QDialog):
    """Find, download and keep models.

    Signals:
        use_requested(object): the user wants to chat with this InstalledModel.
    """

    use_requested = Signal(object)

    def __init__(
        self,
        *,
        hub: HubClient,
        downloads: DownloadManager,
        registry: ModelRegistry,
        tokens: TokenStore,
        probe_hardware: Callable[[], Hardware],
        models_dir: Path,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.setAccessibleName("Model manager")
        self.resize(900, 600)
        self._hub = hub
        self._downloads = downloads
        self._registry = registry
        self._tokens = tokens
        self._models_dir = models_dir
        self._hardware: Hardware | None = None
        self._details: RepoDetails | None = None
        self._search_call = BackgroundCall(self)
        self._details_call = BackgroundCall(self)
        self._hardware_call = BackgroundCall(self)
        self._import_call = BackgroundCall(self)
        self._facts_call = BackgroundCall(self)
        self._facts_info = None  # the GgufInfo of the installed model last selected
        self._token_call = BackgroundCall(self)
        self._facts_call.done.connect(self._show_model_facts)
        self._token_call.done.connect(self._show_token_state)
        self._token_call.failed.connect(self._show_token_error)
        self._search_call.done.connect(self._show_results)
        self._search_call.failed.connect(self._show_find_error)
        self._details_call.done.connect(self._show_details)
        self._details_call.failed.connect(self._show_find_error)
        self._hardware_call.done.connect(self._on_hardware)
        self._import_call.done.connect(self._on_imported)
        self._import_call.failed.connect(lambda message: self.installed_status.setText(message))
        self._hardware_call.run(probe_hardware)

        self.tabs = QTabWidget()
        self.tabs.addTab(self._build_find(), "Find")
        self.tabs.addTab(self._build_downloads(), "Downloads")
        self.tabs.addTab(self._build_installed(), "Installed")
        self.tabs.addTab(self._build_token(), "Access token")
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        downloads.started.connect(self._on_started)
        downloads.progress.connect(self._on_progress)
        downloads.finished.connect(self._on_finished)
        downloads.failed.connect(self._on_failed)
        downloads.cancelled.connect(self._on_cancelled)
        self._rows: dict[str, tuple[QListWidgetItem, QProgressBar, QLabel, QPushButton]] = {}
        self._show_recommended()
        self.refresh_installed()

    # ------------------------------------------------------------------- find

    def search(self, text: str | None = None) -> None:
        """Search the Hub for GGUF repositories (in the background)."""
        query = self.search_box.text() if text is None else text
        sort = self.sort.currentData()  # widgets are read here, on the GUI thread, never in the call
        self.find_status.setText("Searching…")
        self._search_call.run(lambda: self._hub.search(query, sort=sort))

    def open_repo(self, repo_id: str) -> None:
        """Show a repository's files with a verdict for each (in the background)."""
        self.find_status.setText(f"Opening {repo_id}…")
        self.files.clear()
        self._details_call.run(lambda: self._hub.details(repo_id))

    @Slot(object)
    def _show_results(self, results: list[RepoSummary]) -> None:
        self.results.clear()
        for repo in results:
            gated = " · gated" if repo.gated else ""
            item = QListWidgetItem(f"{repo.id}\n↓ {repo.downloads:,} · ♥ {repo.likes:,}{gated}")
            item.setData(ROLE, repo.id)
            self.results.addItem(item)
        self.find_status.setText(f"{len(results)} repositories" if results else "Nothing found.")

    def _show_recommended(self) -> None:
        self.results.clear()
        for pick in RECOMMENDED:
            size = f"{pick.approx_gb:.1f} GB" if pick.approx_gb >= 0.1 else f"{pick.approx_gb * 1000:.0f} MB"
            kind = " · embedding model (for documents)" if pick.kind == "embedding" else ""
            item = QListWidgetItem(f"{pick.repo_id} · {pick.label} · about {size}{kind}\n{pick.why}")
            item.setData(ROLE, pick.repo_id)
            self.results.addItem(item)
        self.find_status.setText("Recommended small models (search the Hub for more):")

    @Slot(object)
    def _show_details(self, details: RepoDetails) -> None:
        self._details = details
        self._fill_files()
        self.find_status.setText(f"{details.repo_id}: {len(details.options)} GGUF models")

    def _fill_files(self) -> None:
        self.files.clear()
        if self._details is None:
            return
        for option in self._details.options:
            verdict = self.verdict(option)
            parts = f" · {len(option.parts)} parts" if len(option.parts) > 1 else ""
            mark = VERDICT_MARKS.get(verdict.kind, "…") if verdict else "…"
            item = QListWidgetItem(f"{option.label} · {option.size / 1e9:.2f} GB{parts} · {mark}")
            item.setToolTip(verdict.sentence if verdict else "Checking this computer…")
            item.setData(ROLE, option)
            self.files.addItem(item)

    def verdict(self, option: ModelOption) -> Verdict | None:
        """Will ``option`` run here? None until the hardware probe has answered."""
        if self._hardware is None:
            return None
        gguf = self._details.gguf if self._details else {}
        parameters = int(gguf.get("total") or option.size * 2)  # ~4 bits a weight when the Hub does not say
        info = estimated_info(file_size=option.size, parameters=parameters,
                              architecture=str(gguf.get("architecture") or "llama"),
                              context_length=gguf.get("context_length"))
        self._models_dir.mkdir(parents=True, exist_ok=True)
        return download_verdict(self._hardware, info, Preferences(), free_disk=shutil.disk_usage(self._models_dir).free)

    @Slot(object)
    def _on_hardware(self, hardware: Hardware) -> None:
        self._hardware = hardware
        self._fill_files()

    @Slot(str)
    def _show_find_error(self, message: str) -> None:
        self.find_status.setText(message)

    @Slot()
    def _download_selected(self) -> None:
        item = self.files.currentItem()
        if item is None:
            self.find_status.setText("Pick a file to download first.")
            return
        option: ModelOption = item.data(ROLE)
        verdict = self.verdict(option)
        if verdict and verdict.kind in ("too_big", "no_disk"):
            self.find_status.setText(verdict.sentence)
            return
        self._downloads.start(option)
        self.tabs.setCurrentIndex(1)

    # -------------------------------------------------------------- downloads

    @Slot(str, object)
    def _on_started(self, key: str, option: ModelOption) -> None:
        if key in self._rows:
            self.download_list.takeItem(self.download_list.row(self._rows.pop(key)[0]))
        row = QWidget()
        name = QLabel(f"{option.repo_id} · {option.label}")
        bar = QProgressBar()
        bar.setRange(0, 1000)
        bar.setAccessibleName(f"Progress of {option.label}")
        status = QLabel("Starting…")
        cancel = QPushButton("Cancel")
        cancel.setAccessibleName(f"Cancel {option.label}")
        cancel.clicked.connect(lambda: self._downloads.cancel(key))
        layout = QVBoxLayout(row)
        top = QHBoxLayout()
        top.addWidget(name, 1)
        top.addWidget(cancel)
        layout.addLayout(top)
        layout.addWidget(bar)
        layout.addWidget(status)
        item = QListWidgetItem()
        item.setSizeHint(row.sizeHint())
        self.download_list.addItem(item)
        self.download_list.setItemWidget(item, row)
        self._rows[key] = (item, bar, status, cancel)

    @Slot(str, object)
    def _on_progress(self, key: str, progress) -> None:
        if key in self._rows:
            _, bar, status, _ = self._rows[key]
            bar.setValue(int(1000 * progress.done_bytes / max(progress.total_bytes, 1)))
            status.setText(progress_text(progress))

    @Slot(str, object)
    def _on_finished(self, key: str, model: InstalledModel) -> None:
        self._end_row(key, f"Installed and verified: {model.display_name}")
        self.refresh_installed()

    @Slot(str, str)
    def _on_failed(self, key: str, message: str) -> None:
        self._end_row(key, message)

    @Slot(str)
    def _on_cancelled(self, key: str) -> None:
        self._end_row(key, "Cancelled; the partial file was deleted.")

    def _end_row(self, key: str, text: str) -> None:
        if key in self._rows:
            _, bar, status, cancel = self._rows[key]
            status.setText(text)
            cancel.setEnabled(False)

    # -------------------------------------------------------------- installed

    def refresh_installed(self) -> None:
        """List installed models with their size, and the total."""
        self.installed.clear()
        total = 0
        for model in self._registry.all():
            size = model.disk_bytes
            total += size
            missing = "" if model.path.exists() else " · file missing"
            item = QListWidgetItem(f"{model.display_name} · {size / 1e9:.2f} GB{missing}\n{model.path}")
            item.setData(ROLE, model.id)
            self.installed.addItem(item)
        self.installed_status.setText(f"{self.installed.count()} models · {total / 1e9:.2f} GB on disk")

    @Slot()
    def _show_facts(self) -> None:
        item = self.installed.currentItem()
        model = self._registry.get(item.data(ROLE)) if item else None
        if model is None:
            return
        self._facts_call.run(lambda: read_gguf_info(model.path))

    @Slot(object)
    def _show_model_facts(self, info) -> None:
        self._facts_info = info
        template = "has a chat template" if info.chat_template else "no chat template"
        context = f"{info.context_length:,}" if info.context_length else "?"
        use = (" An embedding model: Hearth uses it to search your documents by meaning (after a restart); "
               "it does not chat.") if is_embedding_model(info) else ""
        self.facts.setText(
            f"{info.name}: {info.architecture}, {info.parameter_count / 1e9:.2f} B parameters, {info.quantization}, "
            f"context {context} tokens, {template}.{use}"
        )

    @Slot(object)
    def _on_imported(self, info) -> None:
        self.installed_status.setText(f"Imported {info.name}.")
        self.refresh_installed()

    @Slot()
    def _use_selected(self) -> None:
        item = self.installed.currentItem()
        model = self._registry.get(item.data(ROLE)) if item else None
        info = self._facts_info
        if model is not None and info is not None and info.path == model.path and is_embedding_model(info):
            self.installed_status.setText(f"{model.display_name} is an embedding model: it searches your "
                                          "documents, it cannot chat.")
        elif model is not None:
            self.use_requested.emit(model)

    @Slot()
    def _delete_selected(self) -> None:
        item = self.installed.currentItem()
        model = self._registry.get(item.data(ROLE)) if item else None
        if model is None or model.is_demo:
            self.installed_status.setText("The built-in demo model cannot be deleted." if model else "")
            return
        owned = model.path.is_relative_to(self._models_dir.resolve())  # imported files stay where the user keeps them
        question = (f"Delete {model.display_name} from this computer?" if owned else
                    f"Remove {model.display_name} from Hearth? The file stays at {model.path}.")
        answer = QMessageBox.question(self, "Delete model", question)
        if answer != QMessageBox.StandardButton.Yes:
            return
        self._registry.remove(model.id)
        if owned:
            for part in model.files():
                part.unlink(missing_ok=True)
        self.refresh_installed()

    @Slot()
    def _import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a GGUF model", str(Path.home()), "GGUF models (*.gguf)")
        if path:
            self.import_file(Path(path))

    def import_file(self, path: Path) -> None:
        """Validate a local GGUF file (in the background) and register it where it is."""

        def validate():
            refuse_code_carrying(path)  # before any parsing, and naming the danger of a pickle
            info = read_gguf_info(path)
            check_architecture_known(info)  # as loading does: no model llama.cpp cannot run gets listed
            stat = path.stat()
            self._registry.add(InstalledModel(id=f"local/{path.resolve()}", display_name=info.name, path=path.resolve(),
                                              sha256="", size_bytes=stat.st_size, mtime_ns=stat.st_mtime_ns))
            return info

        self.installed_status.setText(f"Checking {path.name}…")
        self._import_call.run(validate)

    # ------------------------------------------------------------------ token

    @Slot()
    def _save_token(self) -> None:
        token = self.token_box.text()
        self.token_box.clear()
        self._ask_keyring(lambda: self._tokens.set(token))

    @Slot()
    def _clear_token(self) -> None:
        self._ask_keyring(self._tokens.clear)

    def _ask_keyring(self, change: Callable[[], None] | None = None) -> None:
        """Make ``change`` (if any), then read the token's state, in the background; the tab shows it."""
        tokens = self._tokens

        def work() -> TokenState:
            if change is not None:
                change()
            return TokenState.read(tokens)

        self.token_status.setText(CHECKING_KEYRING)
        self._token_call.run(work)

    @Slot(object)
    def _show_token_state(self, state: TokenState) -> None:
        self.token_status.setText(state.sentence())

    @Slot(str)
    def _show_token_error(self, message: str) -> None:
        self.token_status.setText(f"The system keyring failed: {message}")

    # ------------------------------------------------------------------ build

    def _build_find(self) -> QWidget:
        page = QWidget()
        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("Search Hugging Face for GGUF models, e.g. qwen 1.5b instruct")
        self.search_box.setAccessibleName("Search models")
        self.search_box.returnPressed.connect(self.search)
        self.sort = QComboBox()
        self.sort.setAccessibleName("Sort by")
        for label, key in (("Most downloaded", "downloads"), ("Most liked", "likes"), ("Recently updated", "recent")):
            self.sort.addItem(label, key)
        go = QPushButton("Search")
        go.clicked.connect(lambda: self.search())
        row = QHBoxLayout()
        row.addWidget(self.search_box, 1)
        row.addWidget(self.sort)
        row.addWidget(go)
        self.results = QListWidget()
        self.results.setAccessibleName("Repositories")
        self.results.setSpacing(3)
        self.results.itemClicked.connect(lambda item: self.open_repo(item.data(ROLE)))
        self.files = QListWidget()
        self.files.setAccessibleName("Files of the repository")
        self.files.setSpacing(3)
        download = QPushButton("Download")
        download.setAccessibleName("Download the selected file")
        download.clicked.connect(self._download_selected)
        self.find_status = QLabel()
        self.find_status.setWordWrap(True)
        lists = QHBoxLayout()
        lists.addWidget(self.results, 1)
        right = QVBoxLayout()
        right.addWidget(self.files, 1)
        right.addWidget(download)
        lists.addLayout(right, 1)
        layout = QVBoxLayout(page)
        layout.addLayout(row)
        layout.addWidget(self.find_status)
        layout.addLayout(lists, 1)
        return page

    def _build_downloads(self) -> QWidget:
        self.download_list = QListWidget()
        self.download_list.setAccessibleName("Downloads")
        return self.download_list

    def _build_installed(self) -> QWidget:
        page = QWidget()
        self.installed = QListWidget()
        self.installed.setAccessibleName("Installed models")
        self.installed.itemSelectionChanged.connect(self._show_facts)
        self.facts = QLabel()
        self.facts.setWordWrap(True)
        self.installed_status = QLabel()
        buttons = QHBoxLayout()
        for text, slot in (("Use", self._use_selected), ("Delete…", self._delete_selected),
                           ("Import a GGUF file…", self._import)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(page)
        layout.addWidget(self.installed, 1)
        layout.addWidget(self.facts)
        layout.addWidget(self.installed_status)
        layout.addLayout(buttons)
        return page

    def _build_token(self) -> QWidget:
        page = QWidget()
        intro = QLabel(
            "Gated and private models need a Hugging Face access token (huggingface.co › Settings › Access "
            "Tokens). Hearth keeps it in your system's keyring only, never in a file or the logs."
        )
        intro.setWordWrap(True)
        self.token_box = QLineEdit()
        self.token_box.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_box.setPlaceholderText("hf_…")
        self.token_box.setAccessibleName("Access token")
        save = QPushButton("Save token")
        save.clicked.connect(self._save_token)
        clear = QPushButton("Forget token")
        clear.clicked.connect(self._clear_token)
        self.token_status = QLabel()
        self.token_status.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.token_box, 1)
        row.addWidget(save)
        row.addWidget(clear)
        layout = QVBoxLayout(page)
        layout.addWidget(intro)
        layout.addLayout(row)
        layout.addWidget(self.token_status)
        layout.addStretch(1)
        self._ask_keyring()
        return page
