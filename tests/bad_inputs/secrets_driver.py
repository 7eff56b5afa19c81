"""The real Hearth (``main.main``) with a script at the keyboard: three secrets saved and used, a chat until killed.

    QT_QPA_PLATFORM=offscreen python tests/bad_inputs/secrets_driver.py --home DIR --model PATH
        --provider-url URL --provider-model ID < secrets

The secrets arrive on stdin, as if typed: the Hugging Face token on the first
line, the provider's API key on the second; never in argv or the environment.
The third secret, the local API server's token, Hearth makes itself. The
script, one step per timer tick:

1. waits for the model, opens Models › Access token, saves the token (the
   keyring), searches the Hub, opens the gated repository and downloads its
   file (both need the token);
2. switches the local API server on (as Settings does), reads its token the
   way Settings shows it (from the keyring, off the GUI thread) and asks the
   server for a reply with it (``step api-used <status>``, after a request
   without it: ``step api-refused <status>``);
3. adds the provider in File › Providers… › Add… (name, base URL, key; Fetch
   models, which needs the key; OK, which saves in the background), chooses
   it for a new conversation in the model picker and waits for its answer
   (``step provider-used``);
4. asks the local model for a long reply in another new conversation.

It prints ``step <name>`` and ``chunk <characters so far>`` lines (flushed, no
secret in them) so that secrets_audit.py knows when to kill it.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from PySide6.QtCore import QObject, QTimer, Slot  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

GATED_REPO = "acme/Gated-GGUF"
PROVIDER_NAME = "Audit provider"


def say(text: str) -> None:
    print(text, flush=True)


def until(condition):
    """Yield (give the event loop a turn) until ``condition()`` is true; return its value."""
    while not (value := condition()):
        yield
    return value


def choose(window, key: str) -> None:
    """Pick ``key`` in the window's model picker, as a click does."""
    picker = window.model_picker
    index = picker.findData(key)
    if index < 0:
        raise RuntimeError(f"the model picker has no {key!r}: {[picker.itemData(i) for i in range(picker.count())]}")
    picker.setCurrentIndex(index)
    picker.activated.emit(index)


def use_api(switch, url: str, outcome: dict) -> None:
    """On a Python thread: read the API token (the keyring) and use it, as a program on this computer would."""
    import httpx

    try:
        token = switch.token()
        with httpx.Client(base_url=url, timeout=60) as client:
            outcome["refused"] = client.get("/models").status_code
            headers = {"Authorization": f"Bearer {token}"}
            model = client.get("/models", headers=headers).json()["data"][0]["id"]
            answer = client.post("/chat/completions", headers=headers, json={
                "model": model, "messages": [{"role": "user", "content": "Hello, API"}], "max_tokens": 8})
            outcome["status"] = answer.status_code
    except Exception as exc:  # noqa: BLE001 - said on stdout (its type only: a message might quote a header)
        outcome["status"] = f"failed-{type(exc).__name__}"


def script(app: QApplication, hf_token: str, provider_key: str, provider_url: str, provider_model: str):
    """The user's actions, one generator step per timer tick."""
    from gui.main_window import MainWindow
    from gui.model_picker import LOCAL
    from gui.model_picker import provider_key as picker_key
    from gui.providers_dialog import ProvidersDialog

    window = yield from until(lambda: next((w for w in app.topLevelWidgets() if isinstance(w, MainWindow)), None))
    yield from until(lambda: window.panel.model_name is not None)
    say("step model-ready")

    # 1. The Hugging Face token.
    window.open_model_manager()
    manager = window._model_manager
    manager.tabs.setCurrentIndex(3)
    manager.token_box.setText(hf_token)
    manager._save_token()
    yield from until(lambda: "saved in your system keyring" in manager.token_status.text())
    say("step token-saved")
    manager.search("Gated")
    yield from until(lambda: manager.results.count() >= 1 and manager.find_status.text() != "Searching…")
    manager.open_repo(GATED_REPO)
    yield from until(lambda: manager.files.count() >= 1 or "gated" in manager.find_status.text())
    say(f"step repo-opened {manager.files.count()}")
    manager.files.setCurrentRow(0)
    manager._download_selected()
    yield from until(lambda: any(row[2].text().startswith(("Installed", "The ")) for row in manager._rows.values()))
    say("step downloaded " + "; ".join(row[2].text() for row in manager._rows.values()))
    manager.close()

    # 2. The local API server's token.
    window.apply_settings(replace(window.settings, api_server_enabled=True, api_port=0))
    yield from until(lambda: window.api_label.text() in ("API on", "API off"))
    if window.api_label.text() != "API on":
        raise RuntimeError(window.api_label.toolTip())
    url = window.api_label.toolTip().split(" at ", 1)[1].split(",", 1)[0]
    outcome: dict = {}
    threading.Thread(target=use_api, args=(window._api, url, outcome), name="api-client", daemon=True).start()
    yield from until(lambda: "status" in outcome)
    say(f"step api-refused {outcome.get('refused')}")
    say(f"step api-used {outcome['status']}")

    # 3. The provider's key, typed into File › Providers… › Add….
    QTimer.singleShot(0, window.open_providers)  # its exec() turns the event loop, and this script with it
    dialog = yield from until(lambda: next((w for w in app.topLevelWidgets()
                                            if isinstance(w, ProvidersDialog) and w.isVisible()), None))
    dialog.add.click()
    editor = dialog.editor
    editor.name.setText(PROVIDER_NAME)
    editor.base_url.setText(provider_url)
    editor.api_key.setText(provider_key)
    editor.fetch.click()
    yield from until(lambda: editor.fetch.isEnabled() and not editor.status.text().startswith("Asking"))
    say(f"step provider-models {editor.model.count()}")
    editor.model.setCurrentText(provider_model)
    editor.buttons.button(editor.buttons.StandardButton.Ok).click()
    yield from until(lambda: not editor.isVisible() or "Saving" not in editor.status.text())
    if editor.isVisible():
        raise RuntimeError(f"the provider was not saved: {editor.status.text()}")
    provider_id = dialog.selected_id()
    say(f"step provider-saved {provider_id} {dialog.list.count()}")
    dialog.reject()  # Close: the window lists what was saved
    yield from until(lambda: window.model_picker.findData(picker_key(provider_id)) >= 0)
    window.new_conversation()
    choose(window, picker_key(provider_id))
    panel = window.panel
    panel.composer.setPlainText("Say hello from over there.")
    panel.send_message()
    yield from until(lambda: panel.active is None)
    reply = panel.session.branch()[-1]
    if reply.role != "assistant" or not reply.content:
        raise RuntimeError(f"the provider did not answer ({reply.status}): {panel.chat_view.toPlainText()[-300:]}")
    say(f"step provider-used {len(reply.content)} {reply.status}")

    # 4. A long local reply, to be cut.
    window.new_conversation()
    choose(window, LOCAL)
    panel = window.panel
    panel.composer.setPlainText("Tell me a very long story about a lighthouse keeper and her owl.")
    panel.send_message()
    say("step reply-asked")
    while True:
        if panel.active is not None and panel.session.branch():
            say(f"chunk {len(panel.session.branch()[-1].content)}")
        yield


class Driver(QObject):
    """Runs :func:`script` on a 20 ms timer."""

    def __init__(self, app: QApplication, *args: str) -> None:
        super().__init__()
        self._app = app
        self._steps = script(app, *args)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._tick)
        self._timer.start(20)

    @Slot()
    def _tick(self) -> None:
        try:
            next(self._steps)
        except StopIteration:
            self._timer.stop()
        except Exception as exc:  # noqa: BLE001 - a step that cannot happen: say so and end, not wait to be killed
            self._timer.stop()
            traceback.print_exc()
            say(f"step failed {type(exc).__name__}: {exc}")
            self._app.exit(1)


def _take(argv: list[str], option: str) -> str:
    """Remove ``option VALUE`` from ``argv`` (Hearth does not know it) and return VALUE."""
    at = argv.index(option)
    value = argv[at + 1]
    del argv[at:at + 2]
    return value


def main() -> int:
    hf_token = sys.stdin.readline().strip()
    provider_key = sys.stdin.readline().strip()
    argv = sys.argv[1:]
    provider_url, provider_model = _take(argv, "--provider-url"), _take(argv, "--provider-model")
    app = QApplication(sys.argv[:1])
    driver = Driver(app, hf_token, provider_key, provider_url, provider_model)
    del hf_token, provider_key
    import main as hearth

    code = hearth.main(argv)
    driver.deleteLater()
    return code


if __name__ == "__main__":
    sys.exit(main())
