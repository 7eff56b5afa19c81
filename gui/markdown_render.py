"""Markdown for chat replies: split into blocks, render to Qt rich text, stream into a frame.

A streamed reply is re-rendered about 30 times a second, so the work per flush
must not grow with the reply. :func:`block_starts` cuts Markdown into top-level
blocks that render the same apart as together; :class:`StreamingMarkdown`
keeps the finished blocks in the document and replaces only the last one.
While the reply streams, code in that last block stays uncoloured until the
block is complete: colouring it again on every flush would cost time in
proportion to the code block.

Splitting rules (pragmatic, checked against markdown-it in the tests):

* A block ends at a blank line, unless the next line is indented (it may
  continue a list item or an indented code block) or, while the block holds a
  list, starts with a list marker (the list goes on; loose lists stay whole).
* A fenced code block (``` or ~~~, at any indentation) is never cut inside;
  an unclosed fence runs to the end of the text.
* A fence opened at column 0 starts a block of its own, and once closed, the
  next non-blank line starts a new block.
* A line is only used to decide a cut once its first characters settle the
  question (an unfinished line ``1`` may still become ``1.``), so a cut made
  while streaming never moves when more text arrives.

Known limit: reference-style link definitions (``[x]: url``) only apply to
their own block.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.styles import get_style_by_name
from pygments.util import ClassNotFound
from PySide6.QtGui import (
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QTextDocumentFragment,
    QTextFrame,
)

_FENCE_OPEN = re.compile(r"([ \t]*)(`{3,}|~{3,})(.*)")
_LIST_ITEM = re.compile(r" {0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
_LIST_MARKER = re.compile(r"(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
# An unfinished line that may still turn into a list marker once more arrives.
_MARKER_PREFIX = re.compile(r"[-*+]|\d{1,9}[.)]?")

# What QTextDocument stores where a child frame (here: a table) begins and ends.
# Frame lookups such as QTextCursor.currentTable() lag behind inside an edit block.
_START_OF_FRAME, _END_OF_FRAME = "\ufdd0", "\ufdd1"

_LIGHT_STYLE, _LIGHT_TEXT = "default", "#1f2328"
_DARK_STYLE, _DARK_TEXT = "github-dark", "#e6edf3"


class _Fence(NamedTuple):
    """An open fenced code block: its character and length, indentation, and container."""

    char: str
    length: int
    indent: int
    in_list_item: bool

    def closes(self, line: str) -> bool:
        """Whether the complete ``line`` is this fence's closing fence."""
        stripped = line.lstrip(" \t")
        indent = len(line) - len(stripped)
        limit = self.indent + 4 if self.in_list_item else 4
        stripped = stripped.rstrip()
        return indent < limit and len(stripped) >= self.length and stripped == self.char * len(stripped)


def _fence_open(line: str, in_list: bool) -> _Fence | None:
    """The fence the complete ``line`` opens, if any."""
    match = _FENCE_OPEN.fullmatch(line)
    if match is None or (match[2][0] == "`" and "`" in match[3]):
        return None
    indent = len(match[1])
    in_list_item = in_list and indent > 0
    if indent >= 4 and not in_list_item:
        return None  # an indented code block, not a fence
    return _Fence(match[2][0], len(match[2]), indent, in_list_item)


def _may_continue_list(line: str, complete: bool) -> bool:
    """Whether a non-indented line after a blank line may still belong to the list above."""
    if not complete and _MARKER_PREFIX.fullmatch(line):
        return True
    return _LIST_MARKER.match(line) is not None


def block_starts(text: str, start: int = 0) -> list[int]:
    """Return the offsets where top-level Markdown blocks begin, scanning from ``start``.

    ``start`` must itself be a block start (0, or an offset this function
    returned for a prefix of ``text``); the result begins with it. The scan is
    linear in ``len(text) - start``, so a streaming caller re-scans only from
    the start of its last block.
    """
    starts = [start]
    fence: _Fence | None = None
    in_list = after_blank = after_fence = False
    position, end_of_text = start, len(text)
    while position < end_of_text:
        newline = text.find("\n", position)
        complete = newline >= 0
        end = newline + 1 if complete else end_of_text
        line = text[position:newline] if complete else text[position:]
        blank = not line.strip()
        if fence is not None and fence.in_list_item and not blank and line[0] not in " \t":
            fence = None  # an unindented line ends the list item, and the fence in it
        if fence is not None:
            if complete and fence.closes(line):
                after_fence, fence = fence.indent == 0, None
        elif blank:
            after_blank = after_blank or complete
        else:
            # Cuts fall only before unindented lines, which end any list item.
            opened = _fence_open(line, in_list) if complete else None
            if position > starts[-1] and (
                after_fence
                or (opened is not None and opened.indent == 0)
                or (after_blank and line[0] not in " \t" and not (in_list and _may_continue_list(line, complete)))
            ):
                starts.append(position)
                in_list = False
            in_list = in_list or _LIST_ITEM.match(line) is not None
            after_blank = after_fence = False
            fence = opened
        position = end
    return starts


def split_blocks(text: str) -> list[str]:
    """Split Markdown into top-level blocks that render the same one by one as together.

    ``"".join(split_blocks(text)) == text``; each block keeps its trailing
    blank lines. See the module docstring for the rules.
    """
    if not text:
        return []
    starts = block_starts(text)
    return [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]


@dataclass(frozen=True)
class RenderedBlock:
    """HTML for one block and the raw source of the fenced code blocks in it, in order."""

    html: str
    code: tuple[str, ...]


class MarkdownRenderer:
    """Turns Markdown blocks into the HTML subset QTextDocument understands.

    Raw HTML in the source is shown as text, images become links (a
    QTextBrowser would otherwise load local files named by the model), and
    fenced code is coloured by Pygments with inline styles under a
    language label and a Copy link.
    """

    def __init__(self, *, dark: bool = False) -> None:
        style = get_style_by_name(_DARK_STYLE if dark else _LIGHT_STYLE)
        self._code_background = style.background_color
        self._code_color = _DARK_TEXT if dark else _LIGHT_TEXT
        self._formatter = HtmlFormatter(style=style, noclasses=True, nowrap=True)
        self._lexers: dict[str, Lexer | None] = {}
        self._md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
        # Set directly: add_render_rule would rebind these methods to the renderer.
        self._md.renderer.rules["fence"] = self._fence
        self._md.renderer.rules["code_block"] = self._code_block
        self._md.renderer.rules["image"] = self._image
        self._md.renderer.rules["table_open"] = lambda *_: '<table border="1" cellspacing="0" cellpadding="4">\n'
        # markdown-it compiles its rule chains on first use (a few ms here,
        # far more on a busy machine): pay it before the window shows rather
        # than when the first message is sent.
        self._md.render("*warm* `up`\n\n| a |\n|---|\n| ~~b~~ |")

    def render_block(self, block: str, *, code_anchor: str | None = None) -> str:
        """Return HTML for one block; a fenced code block gets a Copy link to ``code_anchor``.

        When the block holds several fenced code blocks (a list whose items
        carry code), the later ones link to ``f"{code_anchor}.{n}"``, n = 1, 2...
        """
        if code_anchor is None:
            return self.render(block).html
        return self.render(block, anchors=lambda n: f"{code_anchor}.{n}" if n else code_anchor).html

    def render(
        self,
        block: str,
        *,
        anchors: Callable[[int], str] | None = None,
        first_code_index: int = 0,
        colour_code: bool = True,
    ) -> RenderedBlock:
        """Return the HTML and the code of one block.

        Args:
            block: Markdown source.
            anchors: maps a fenced code block's index (counted from
                ``first_code_index``) to the href of its Copy link; None: no links.
            first_code_index: index of the block's first fenced code block.
            colour_code: colour fenced code with Pygments; without it the code
                looks the same, uncoloured, and costs next to nothing.
        """
        env = {"anchors": anchors, "code": [], "first": first_code_index, "colour": colour_code}
        body = self._md.renderer.render(self._md.parse(block, env), self._md.options, env)
        return RenderedBlock(body, tuple(env["code"]))

    def _fence(self, tokens, index, _options, env) -> str:
        token = tokens[index]
        language = token.info.strip().split(maxsplit=1)[0] if token.info.strip() else ""
        code_index = env["first"] + len(env["code"])
        env["code"].append(token.content)
        lexer = self._lexer(language) if env["colour"] else None
        if lexer is None:
            body = html.escape(token.content, quote=False)
        else:
            body = highlight(token.content, lexer, self._formatter)
        label = [f"<small>{html.escape(language)}</small>"] if language else []
        if env["anchors"] is not None:
            label.append(f'<a href="{html.escape(env["anchors"](code_index))}"><small>Copy</small></a>')
        header = f'<p style="margin-top:8px; margin-bottom:2px">{" &middot; ".join(label)}</p>\n' if label else ""
        return header + self._pre(body)

    def _code_block(self, tokens, index, _options, _env) -> str:
        return self._pre(html.escape(tokens[index].content, quote=False))

    def _pre(self, body: str) -> str:
        body = body.rstrip("\n")  # Qt would show a final newline as an empty last line
        style = f"margin-top:0px; background-color:{self._code_background}; color:{self._code_color}"
        return f'<pre style="{style}">{body}</pre>\n'

    def _image(self, tokens, index, _options, _env) -> str:
        token = tokens[index]
        alt = "".join(child.content for child in token.children or ()) or token.attrGet("src")
        return f'<a href="{html.escape(str(token.attrGet("src")))}">{html.escape(str(alt))}</a>'

    def _lexer(self, language: str) -> Lexer | None:
        # Looking a lexer up scans Pygments' registry: far too slow per flush.
        if language not in self._lexers:
            try:
                # stripnl=False: keep leading and trailing blank lines, as uncoloured code does.
                self._lexers[language] = get_lexer_by_name(language, stripnl=False) if language else None
            except ClassNotFound:
                self._lexers[language] = None
        return self._lexers[language]


@dataclass(frozen=True)
class _Placed:
    """A block shown in the document.

    ``end`` is where its content ends, as an offset from the body start, and
    ``end_formats`` the block and char format of the document block there,
    as they were before anything was joined into it. ``uncoloured`` marks
    code shown without colours while the block was still growing.
    """

    source: str
    end: int
    end_formats: tuple[QTextBlockFormat, QTextCharFormat]
    code: tuple[str, ...]
    uncoloured: bool


class StreamingMarkdown:
    """Renders one message's Markdown into the part of ``frame`` from ``start`` to its end.

    Finished blocks stay in the document; each :meth:`set_text` replaces
    only the region from the first block that changed (normally the last one)
    to the end of the frame. Nothing before ``start`` is touched. Anything
    added to the frame after the body is replaced by the next :meth:`set_text`.

    Args:
        frame: the message's frame; it need not be the document's last.
        start: document position where the body begins: the start of a block
            in ``frame``, normally the empty one after the author line.
        renderer: turns blocks into HTML.
        code_anchor_prefix: Copy links point to ``f"{code_anchor_prefix}{i}"``,
            i counting the message's fenced code blocks from 0.

    Raises:
        ValueError: ``start`` is not the start of a block in ``frame``.
    """

    def __init__(self, frame: QTextFrame, start: int, renderer: MarkdownRenderer, code_anchor_prefix: str) -> None:
        block = frame.document().findBlock(start)
        if not frame.firstPosition() <= start <= frame.lastPosition() or block.position() != start:
            raise ValueError(f"position {start} is not the start of a block in the frame")
        self._frame = frame
        # Positions before the body shift when earlier messages change; the
        # offset inside the frame does not.
        self._start_in_frame = start - frame.firstPosition()
        self._start_formats = block.blockFormat(), block.charFormat()
        self._renderer = renderer
        self._prefix = code_anchor_prefix
        self._scratch = QTextDocument()
        self._text = ""
        self._placed: list[_Placed] = []
        self._code: list[str] = []

    def set_text(self, text: str, *, partial: bool = False) -> None:
        """Show ``text``, the whole message so far, re-rendering only what changed.

        Args:
            text: the message's Markdown so far.
            partial: more text will follow. Code in the last block, which is
                still growing, is then shown uncoloured until the block is
                complete, since colouring it again on every flush costs time
                in proportion to the code. Leave False for the final text.
        """
        if self._placed and text.startswith(self._text):
            # Appended text cannot move a cut before the last block.
            kept = len(self._placed) - 1
            starts = block_starts(text, len(self._text) - len(self._placed[-1].source))
            sources = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
        else:
            kept, sources = 0, split_blocks(text)
        while kept < len(self._placed) and sources and sources[0] == self._placed[kept].source:
            if self._placed[kept].uncoloured and not (partial and len(sources) == 1):
                break  # complete now, or final: colour its code
            kept += 1
            del sources[0]
        self._text = text
        if sources or kept < len(self._placed):
            self._replace_from(kept, sources, partial=partial)

    def code_blocks(self) -> list[str]:
        """Return the raw source of each fenced code block so far, in order."""
        return list(self._code)

    def _replace_from(self, kept: int, sources: list[str], *, partial: bool) -> None:
        for placed in self._placed[kept:]:
            del self._code[len(self._code) - len(placed.code):]
        del self._placed[kept:]
        body_start = self._frame.firstPosition() + self._start_in_frame
        last = self._placed[-1] if self._placed else None
        end, formats = (last.end, last.end_formats) if last else (0, self._start_formats)
        cursor = QTextCursor(self._frame.document())
        cursor.beginEditBlock()
        cursor.setPosition(body_start + end)
        # Qt gives a block emptied from its start the format of the last block
        # removed, so such a block gets its own back.
        emptied = cursor.atBlockStart()
        cursor.setPosition(self._frame.lastPosition(), QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        if emptied:
            cursor.setBlockFormat(formats[0])
            cursor.setBlockCharFormat(formats[1])
        for index, source in enumerate(sources):
            colour = not (partial and index == len(sources) - 1)
            rendered = self._renderer.render(
                source, anchors=self._anchor, first_code_index=len(self._code), colour_code=colour
            )
            if rendered.html.strip():
                self._insert(cursor, rendered.html.rstrip(), join=_joinable(cursor, body_start))
            end_formats = cursor.blockFormat(), cursor.blockCharFormat()
            uncoloured = bool(rendered.code) and not colour
            self._placed.append(_Placed(source, cursor.position() - body_start, end_formats, rendered.code, uncoloured))
            self._code.extend(rendered.code)
        cursor.endEditBlock()

    def _anchor(self, index: int) -> str:
        return f"{self._prefix}{index}"

    def _insert(self, cursor: QTextCursor, body: str, *, join: bool) -> None:
        """Insert ``body`` after the cursor's block as blocks that keep their own formats.

        ``insertHtml`` would merge the first HTML block into the cursor's block
        and drop its block format (a heading or code block loses its look), so
        the fragment starts with a block separator instead. With ``join`` the
        first new block is then joined into the cursor's (empty) block, taking
        its formats.
        """
        self._scratch.setDefaultStyleSheet(self._frame.document().defaultStyleSheet())
        self._scratch.setHtml("<p>x</p>" + body)
        source = QTextCursor(self._scratch)
        source.setPosition(1)
        source.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        position = cursor.position()
        cursor.insertFragment(QTextDocumentFragment(source))
        # A table cannot be joined; it then starts one empty line lower.
        if join and self._frame.document().characterAt(position + 1) != _START_OF_FRAME:
            joiner = QTextCursor(self._frame.document())
            joiner.setPosition(position + 1)
            joiner.deletePreviousChar()


def _joinable(cursor: QTextCursor, body_start: int) -> bool:
    """Whether new blocks should fill the cursor's block rather than follow it.

    True on the body's empty first line and on the empty line Qt keeps
    after a table; other empty blocks (a rule, an empty list item) are content.
    """
    if cursor.position() == body_start:
        return True
    document = cursor.document()
    return cursor.block().length() == 1 and document.characterAt(cursor.block().position() - 1) == _END_OF_FRAME
