"""The conversation: a read-only rich-text document with one frame per message.

Each frame holds a header line (author, ``‹ 2/3 ›`` between versions, Copy,
Edit, Regenerate or Continue links, and a state such as ``[Stopped]``) and the
message body rendered from Markdown. A streaming reply re-renders only its
growing last Markdown block, at most every ``FLUSH_INTERVAL_MS``. Long
conversations show their last ``SHOWN_MESSAGES`` messages, with a link to
show earlier ones.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, replace

from PySide6.QtCore import QTimer, QUrl, Signal, Slot
from PySide6.QtGui import (
    QColor,
    QDesktopServices,
    QGuiApplication,
    QPalette,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextFrame,
    QTextFrameFormat,
)
from PySide6.QtWidgets import QFrame, QTextBrowser, QWidget

from gui.markdown_render import MarkdownRenderer, StreamingMarkdown

FLUSH_INTERVAL_MS = 30
SHOWN_MESSAGES = 200
# Qt lays out one very long line in super-linear time (50,000 characters: ~0.9 s, 1 MB: minutes),
# so a huge message shows its beginning; Copy still copies all of it.
SHOWN_CHARACTERS = 20_000
# While a model thinks, its section shows the latest thinking only (the header is re-laid out each flush).
LIVE_THINKING_CHARACTERS = 1_500


def shown_text(content: str) -> str:
    """What the view renders of a message: all of it, or the first ``SHOWN_CHARACTERS`` and a note."""
    if len(content) <= SHOWN_CHARACTERS:
        return content
    rest = len(content) - SHOWN_CHARACTERS
    return f"{content[:SHOWN_CHARACTERS]}\n\n*… {rest:,} more characters not shown. Copy copies the whole message.*"


@dataclass(frozen=True)
class MessageView:
    """What the view shows for one message."""

    id: str
    role: str  # "user" or "assistant"
    author: str
    content: str
    position: tuple[int, int] = (1, 1)  # this version / number of versions
    state: str = ""  # e.g. "Stopped", "Interrupted"; empty for a finished message
    can_continue: bool = False
    thinking: str = ""  # a reasoning model's thinking, shown apart from the answer (plain text)
    thinking_seconds: float | None = None  # how long it thought, as stored (None: unknown)


def _blend(base: QColor, tint: QColor, amount: float) -> QColor:
    """``base`` moved ``amount`` (0..1) of the way toward ``tint``."""
    return QColor(
        round(base.red() + (tint.red() - base.red()) * amount),
        round(base.green() + (tint.green() - base.green()) * amount),
        round(base.blue() + (tint.blue() - base.blue()) * amount),
    )


def is_dark(palette: QPalette) -> bool:
    """Whether the palette is a dark one (light text on a dark background)."""
    return palette.color(QPalette.ColorRole.Base).lightness() < palette.color(QPalette.ColorRole.Text).lightness()


class ChatView(QTextBrowser):
    """Shows a conversation's branch; a reply streams into its message through :meth:`stream_text`.

    Signals:
        action_requested(str, str): a message link was clicked: ("edit" | "regenerate" | "continue" |
            "previous" | "next", message id), ("cite", "message id:n") for a citation, or ("earlier", "")
            to show older messages.
    """

    action_requested = Signal(str, str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setAccessibleName("Conversation")
        self.document().setDocumentMargin(16)
        # Every flush would otherwise be recorded as an undo step (megabytes for long replies).
        self.document().setUndoRedoEnabled(False)
        font = self.font()
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.setFont(font)
        self.anchorClicked.connect(self._on_anchor)
        self._renderer = MarkdownRenderer(dark=is_dark(self.palette()))
        self._frames: dict[str, QTextFrame] = {}
        self._bodies: dict[str, StreamingMarkdown] = {}
        self._views: dict[str, MessageView] = {}
        self._streaming_id: str | None = None
        self._pending_text: str | None = None
        self._pending_thinking: str | None = None
        self._streamed_text = ""  # the streaming reply's answer as last shown
        self._thinking_open: set[str] = set()  # messages whose thinking is expanded
        self._thinking_times: dict[str, list[float]] = {}  # message id -> [first thinking, first answer] (monotonic)
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(FLUSH_INTERVAL_MS)
        self._flush_timer.timeout.connect(self._flush)

    # ------------------------------------------------------------ whole views

    def show_messages(self, views: list[MessageView], *, show_all: bool = False) -> None:
        """Replace the document with these messages (the last ``SHOWN_MESSAGES`` unless ``show_all``)."""
        self._flush_timer.stop()
        self._streaming_id = None
        self.document().clear()
        self._frames.clear()
        self._bodies.clear()
        self._views.clear()
        hidden = 0 if show_all else max(0, len(views) - SHOWN_MESSAGES)
        if hidden:
            self.add_notice(f'<a href="earlier:">Show {hidden} earlier messages</a>', rich=True)
        for view in views[hidden:]:
            self.append_message(view)
        self._scroll_to_end()

    def refresh_theme(self) -> None:
        """Pick the light or dark code colours again (the caller re-shows the messages)."""
        self._renderer = MarkdownRenderer(dark=is_dark(self.palette()))

    # -------------------------------------------------------------- messages

    def append_message(self, view: MessageView) -> None:
        """Add a message at the end."""
        at_bottom = self._is_at_bottom()
        frame_format = QTextFrameFormat()
        frame_format.setPadding(10)
        frame_format.setBottomMargin(12)
        frame_format.setBorder(0)
        if view.role == "user":
            palette = self.palette()
            tint = palette.color(QPalette.ColorRole.Highlight)
            frame_format.setBackground(_blend(palette.color(QPalette.ColorRole.Base), tint, 0.12))
            frame_format.setLeftMargin(64)
        else:
            frame_format.setRightMargin(64)
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        frame = cursor.insertFrame(frame_format)
        cursor.insertHtml(self._header_html(view))
        cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())  # the header's link format must not leak
        body = StreamingMarkdown(frame, cursor.position(), self._renderer, f"copycode:{view.id}:")
        body.set_text(shown_text(view.content))
        self._frames[view.id], self._bodies[view.id], self._views[view.id] = frame, body, view
        if at_bottom:
            self._scroll_to_end()

    def update_message(self, view: MessageView) -> None:
        """Redraw one message's header and body (e.g. when its reply ends)."""
        if view.id == self._streaming_id:
            self._flush_timer.stop()
            self._streaming_id = None
        frame = self._frames.get(view.id)
        if frame is None:
            return
        self._views[view.id] = view
        self._rewrite_header(view, view.content)

    def _rewrite_header(self, view: MessageView, content: str) -> None:
        """Redraw the header (with the thinking section) of a shown message, then its body from ``content``."""
        frame = self._frames[view.id]
        cursor = QTextCursor(self.document())
        cursor.setPosition(frame.firstPosition())
        cursor.movePosition(QTextCursor.MoveOperation.EndOfBlock, QTextCursor.MoveMode.KeepAnchor)
        cursor.insertHtml(self._header_html(view))
        # The header's length changed, so the body moved: render it afresh from its new start.
        body = StreamingMarkdown(frame, cursor.block().next().position(), self._renderer, f"copycode:{view.id}:")
        body.set_text(shown_text(content))
        self._bodies[view.id] = body

    def start_stream(self, message_id: str) -> None:
        """The reply in ``message_id`` starts streaming; feed it with :meth:`stream_text`."""
        self._streaming_id = message_id
        self._streamed_text = ""

    def stream_text(self, text: str) -> None:
        """The streaming reply's whole text so far; shown at the next flush (≤ 30 ms)."""
        self._pending_text = text
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def stream_thinking(self, thinking: str) -> None:
        """The streaming reply's whole thinking so far: "Thinking…" with the live text until the answer starts."""
        if thinking and self._streaming_id is not None:
            self._thinking_times.setdefault(self._streaming_id, [time.monotonic()])
        self._pending_thinking = thinking
        if not self._flush_timer.isActive():
            self._flush_timer.start()

    def thinking_seconds(self, message_id: str) -> float | None:
        """How long the model thought before answering: timed while it streamed, else as stored, else None."""
        view = self._views.get(message_id)
        return self._seconds_of(view) if view is not None else None

    def _seconds_of(self, view: MessageView) -> float | None:
        times = self._thinking_times.get(view.id, [])
        return times[1] - times[0] if len(times) == 2 else view.thinking_seconds

    def toggle_thinking(self, message_id: str) -> None:
        """Expand or collapse a message's thinking."""
        view = self._views.get(message_id)
        if view is None:
            return
        self._thinking_open ^= {message_id}
        self._rewrite_header(view, self._streamed_text if message_id == self._streaming_id else view.content)

    def add_notice(self, text: str, *, rich: bool = False) -> None:
        """Append a grey line outside any message, e.g. an error about the model."""
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        frame_format = QTextFrameFormat()
        frame_format.setPadding(6)
        frame_format.setBottomMargin(12)
        cursor.insertFrame(frame_format)
        grey = self.palette().color(QPalette.ColorRole.PlaceholderText).name()
        body = text if rich else html.escape(text)
        cursor.insertHtml(f'<span style="color:{grey}">{body}</span>')
        self._scroll_to_end()

    def scroll_to_message(self, message_id: str) -> None:
        """Bring a message into view and select its text briefly (a search hit)."""
        frame = self._frames.get(message_id)
        if frame is None:
            return
        cursor = QTextCursor(self.document())
        cursor.setPosition(frame.firstPosition())
        cursor.setPosition(frame.lastPosition(), QTextCursor.MoveMode.KeepAnchor)
        self.setTextCursor(cursor)
        self.ensureCursorVisible()

    def message_text(self, message_id: str) -> str:
        """The Markdown source of a shown message."""
        return self._views[message_id].content if message_id in self._views else ""

    # ------------------------------------------------------------- internals

    @Slot()
    def _flush(self) -> None:
        if self._streaming_id is None or (self._pending_text is None and self._pending_thinking is None):
            return
        at_bottom = self._is_at_bottom()
        message_id = self._streaming_id
        view = self._views[message_id]
        text = self._pending_text if self._pending_text is not None else self._streamed_text
        self._streamed_text = text
        thinking = self._pending_thinking if self._pending_thinking is not None else view.thinking
        times = self._thinking_times.get(message_id)
        answered_now = times is not None and len(times) == 1 and bool(text.strip())
        if answered_now:
            times.append(time.monotonic())  # the answer starts: the section collapses to "Thought for …"
        if thinking != view.thinking or answered_now:
            self._views[message_id] = view = replace(view, thinking=thinking)
            self._rewrite_header(view, text)
        elif self._pending_text is not None:
            self._bodies[message_id].set_text(shown_text(text), partial=True)
        self._pending_text = self._pending_thinking = None
        if at_bottom:
            self._scroll_to_end()

    def _header_html(self, view: MessageView) -> str:
        grey = self.palette().color(QPalette.ColorRole.PlaceholderText).name()
        link = self.palette().color(QPalette.ColorRole.Link).name()

        def anchor(action: str, label: str) -> str:
            return f'<a href="{action}:{view.id}" style="color:{link}; text-decoration:none">{label}</a>'

        parts = [f'<span style="color:{grey}; font-weight:600">{html.escape(view.author)}</span>']
        index, count = view.position
        if count > 1:
            parts.append(f'{anchor("previous", "‹")} <span style="color:{grey}">{index}/{count}</span> '
                         f'{anchor("next", "›")}')
        links = [anchor("copy", "Copy"), anchor("edit", "Edit")]
        if view.role == "assistant":
            links.append(anchor("continue", "Continue") if view.can_continue else anchor("regenerate", "Regenerate"))
        parts.append(f'<span style="color:{grey}"> · </span>'.join(links))
        if view.state:
            parts.append(f'<span style="color:{grey}; font-style:italic">[{html.escape(view.state)}]</span>')
        return " &nbsp; ".join(parts) + self._thinking_html(view, grey)

    def _thinking_html(self, view: MessageView, grey: str) -> str:
        """The thinking section under the header: quiet plain text, never part of the answer's Markdown."""
        thinking = view.thinking.strip()
        if not thinking:
            return ""
        times = self._thinking_times.get(view.id)
        still_thinking = view.id == self._streaming_id and times is not None and len(times) == 1
        opened = view.id in self._thinking_open
        if still_thinking:
            label = "Thinking…"
            shown = thinking if opened or len(thinking) <= LIVE_THINKING_CHARACTERS \
                else "…" + thinking[-LIVE_THINKING_CHARACTERS:]
        else:
            seconds = self._seconds_of(view)
            label = f"Thought for {seconds:.0f} s" if seconds is not None else f"Thought ({len(thinking):,} characters)"
            shown = shown_text(thinking) if opened else ""
        arrow = "▾" if still_thinking or opened else "▸"
        section = (f'<br><a href="thinking:{view.id}" style="color:{grey}; text-decoration:none">'
                   f'{arrow} {html.escape(label)}</a>')
        if shown:
            body = html.escape(shown).replace("\n", "<br>")
            section += f'<br><span style="color:{grey}; font-style:italic">{body}</span>'
        return section

    @Slot(QUrl)
    def _on_anchor(self, url: QUrl) -> None:
        action, _, rest = url.toString().partition(":")
        if action == "copy" and rest in self._views:
            QGuiApplication.clipboard().setText(self._views[rest].content)
        elif action == "copycode":
            message_id, _, index = rest.rpartition(":")
            blocks = self._bodies[message_id].code_blocks() if message_id in self._bodies else []
            if index.isdigit() and int(index) < len(blocks):
                QGuiApplication.clipboard().setText(blocks[int(index)])
        elif action == "thinking":
            self.toggle_thinking(rest)
        elif action in ("edit", "regenerate", "continue", "previous", "next", "earlier", "cite"):
            self.action_requested.emit(action, rest)
        elif url.scheme() in ("http", "https"):  # links in replies; markdown-it drops javascript:, file:…
            QDesktopServices.openUrl(url)

    def _is_at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 4

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())
