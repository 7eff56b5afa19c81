"""Markdown rendering: block splitting, HTML for Qt, and streaming into a message frame."""

from __future__ import annotations

import random

import pytest
from markdown_it import MarkdownIt
from PySide6.QtCore import QUrl
from PySide6.QtGui import QBrush, QTextCursor, QTextDocument, QTextFormat, QTextFrame, QTextFrameFormat, QTextLength

from gui.markdown_render import MarkdownRenderer, StreamingMarkdown, block_starts, split_blocks

# Pieces of Markdown that models write, and some that test the splitting rules.
SNIPPETS = [
    "# A heading\n",
    "A paragraph with *emphasis*, **bold**, `code` and a [link](https://example.com).\nIts second line.\n",
    "\n",
    "\n\n",
    "- one\n- two\n",
    "- one\n\n- two, loose\n",
    "1. first\n\n   more of the first\n\n2. second\n",
    "10. ten\n",
    "2) two\n",
    "+ plus\n",
    "```python\nx = 1\n\n\ny = 2\n```\n",
    "~~~\ntilde fence\n~~~\n",
    "```\nunclosed fence\n\nstill code\n",
    "````md\n```py\ninner\n```\n````\n",
    "```a`b\n",
    "> a quote\n> goes on\n",
    "> a quote\nlazy continuation\n",
    "> ```\n> quoted code\n\n> next quote\n",
    "    indented code\n",
    "    ```\n",
    "  indented paragraph\n",
    "| a | b |\n|---|---|\n| 1 | 2 |\n",
    "---\n",
    "* * *\n",
    "Setext heading\n===\n",
    "- item with code:\n  ```js\n  let a = 1;\n\n  a += 1;\n  ```\n",
    "Some text, then code:\n```sh\nls -l\n```\nand text right after.\n",
    "123456789012. not a list\n",
]

REPLY_PARTS = [
    "# Reading a CSV file\n\nHere is how to read a file **safely**, with `csv` from the standard library.\n\n",
    "1. Open the file with `newline=''`.\n2. Make a `csv.reader`.\n3. Loop over the rows:\n\n"
    "   ```python\n   for row in reader:\n       print(row)\n   ```\n\n",
    "```python\nimport csv\n\n\ndef read(path):\n    \"\"\"Return the rows of a CSV file.\"\"\"\n"
    "    with open(path, newline='') as handle:\n        return list(csv.reader(handle))  # all at once\n```\n\n",
    "> Note: large files are better read lazily.\n> Use a generator.\n\n",
    "- **Tip:** pass `encoding='utf-8'` explicitly.\n- Skip the header with `next(reader)`.\n\n",
    "And the same in a shell, raw HTML left as text: <b>not bold</b> <script>alert(1)</script>\n\n",
    "```bash\nhead -n 5 data.csv\n\nwc -l data.csv\n```\nThat prints the first lines.\n\n",
    "| Column | Type |\n|---|---|\n| name | text |\n| size | int |\n\n",
    "Done. Ask if you want the **pandas** version.\n",
]


def reply(length: int) -> str:
    """A realistic reply of at least ``length`` characters."""
    text, index = "", 0
    while len(text) < length:
        text += REPLY_PARTS[index % len(REPLY_PARTS)]
        index += 1
    return text


def random_documents(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(SNIPPETS) for _ in range(rng.randint(1, 8))) for _ in range(count)]


# --- split_blocks ---------------------------------------------------------------------------


def test_paragraphs_split_at_blank_lines_and_keep_them() -> None:
    assert split_blocks("One.\nStill one.\n\nTwo.\n\n\nThree.") == ["One.\nStill one.\n\n", "Two.\n\n\n", "Three."]
    assert split_blocks("") == []


def test_fence_with_blank_lines_is_one_block() -> None:
    text = "Intro.\n\n```python\na = 1\n\n\nb = 2\n```\n\nAfter."
    assert split_blocks(text) == ["Intro.\n\n", "```python\na = 1\n\n\nb = 2\n```\n\n", "After."]


def test_fence_at_column_zero_is_its_own_block_even_without_blank_lines() -> None:
    text = "Run this:\n~~~\nls\n\n~~~\nthen look."
    assert split_blocks(text) == ["Run this:\n", "~~~\nls\n\n~~~\n", "then look."]


def test_unclosed_fence_runs_to_the_end() -> None:
    text = "Code:\n\n```js\nlet a;\n\nlet b;\n\nNot a paragraph yet"
    assert split_blocks(text) == ["Code:\n\n", "```js\nlet a;\n\nlet b;\n\nNot a paragraph yet"]


def test_lists_stay_together_until_a_line_outside_them() -> None:
    text = "- a\n- b\n\n- c, loose\n\n  more of c\n\n1. next list\n\nParagraph."
    assert split_blocks(text) == ["- a\n- b\n\n- c, loose\n\n  more of c\n\n1. next list\n\n", "Paragraph."]


def test_paragraph_then_list_splits_but_quote_keeps_lazy_lines() -> None:
    assert split_blocks("Para.\n\n- a\n- b\n") == ["Para.\n\n", "- a\n- b\n"]
    assert split_blocks("> quoted\nlazy\n\n> another") == ["> quoted\nlazy\n\n", "> another"]


def test_an_unfinished_line_does_not_decide_a_cut() -> None:
    """After a list, ``1`` may become ``1. item`` (the same list) or ``1999 was...`` (a new paragraph)."""
    assert split_blocks("- a\n\n1") == ["- a\n\n1"]
    assert split_blocks("- a\n\n1. b") == ["- a\n\n1. b"]
    assert split_blocks("- a\n\n1999 was") == ["- a\n\n", "1999 was"]


@pytest.mark.parametrize(
    ("text", "blocks"),
    [
        # Four spaces make an indented code block, not a fence: the fence opens on line 2.
        ("    ```\n```\ncode\n\nmore\n```\n", ["    ```\n", "```\ncode\n\nmore\n```\n"]),
        # An unindented line ends a list item and the fence inside it.
        ("1. a\n   ```\n   x\n```\ny\n\nz\n```\n", ["1. a\n   ```\n   x\n", "```\ny\n\nz\n```\n"]),
        # A longer fence is closed only by one at least as long.
        ("````md\n```py\nx\n```\n\ny\n````\nafter", ["````md\n```py\nx\n```\n\ny\n````\n", "after"]),
    ],
)
def test_fences_follow_commonmark(text: str, blocks: list[str]) -> None:
    md = MarkdownIt("commonmark", {"html": False})
    assert split_blocks(text) == blocks
    assert "".join(md.render(block) for block in blocks) == md.render(text)


@pytest.mark.parametrize("seed", range(3))
def test_blocks_render_like_the_whole_at_every_prefix(seed: int) -> None:
    """markdown-it gives the same HTML for the blocks one by one as for the whole, while it streams."""
    md = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    for text in random_documents(seed, 12):
        final = split_blocks(text)
        for cut in range(0, len(text) + 1, 3):
            prefix = text[:cut]
            blocks = split_blocks(prefix)
            assert "".join(blocks) == prefix
            assert "".join(md.render(block) for block in blocks) == md.render(prefix), prefix
            # A cut made while streaming stays where it is.
            assert blocks[:-1] == final[: max(len(blocks) - 1, 0)], prefix


def test_block_starts_rescans_only_the_tail() -> None:
    text = reply(3_000)
    starts = block_starts(text)
    assert starts[0] == 0 and len(starts) > 20
    assert block_starts(text, starts[-3]) == starts[-3:]


# --- MarkdownRenderer -----------------------------------------------------------------------


def test_code_block_gets_pygments_colours_and_a_copy_link() -> None:
    html = MarkdownRenderer().render_block("```python\ndef f():\n    return 1\n```\n", code_anchor="copy:7")
    assert '<a href="copy:7">' in html and "Copy" in html
    assert "<small>python</small>" in html
    assert 'style="color: #008000; font-weight: bold">def</span>' in html  # Pygments' default style, inline
    assert "<pre" in html and 'class="' not in html


def test_several_fences_in_one_block_get_distinct_anchors() -> None:
    html = MarkdownRenderer().render_block("- a\n  ```\n  x\n  ```\n- b\n  ```\n  y\n  ```\n", code_anchor="c")
    assert '<a href="c">' in html and '<a href="c.1">' in html


def test_unknown_or_missing_language_is_plain_escaped_code() -> None:
    renderer = MarkdownRenderer()
    for block in ("```nosuchlanguage\na < b && c\n```\n", "```\na < b && c\n```\n"):
        rendered = renderer.render(block)
        assert "a &lt; b &amp;&amp; c</pre>" in rendered.html
        assert "<span" not in rendered.html
        assert rendered.code == ("a < b && c\n",)


def test_raw_html_is_escaped_and_images_become_links() -> None:
    source = '<b>x</b> <script>alert(1)</script> ![cat](https://e.org/c.png) <img src="/etc">'
    html = MarkdownRenderer().render_block(source)
    assert "<b>" not in html and "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<a href="https://e.org/c.png">cat</a>' in html


def test_dark_renderer_uses_a_dark_code_background() -> None:
    light = MarkdownRenderer().render_block("```\nx\n```\n")
    dark = MarkdownRenderer(dark=True).render_block("```\nx\n```\n")
    assert "background-color:#f8f8f8" in light
    assert "background-color:#0d1117" in dark


# --- StreamingMarkdown in a QTextDocument ---------------------------------------------------


def add_message(document: QTextDocument, author: str) -> tuple[QTextFrame, int]:
    """A message frame like the chat view's: an author line, then an empty block for the body."""
    cursor = QTextCursor(document)
    cursor.movePosition(QTextCursor.MoveOperation.End)
    frame = cursor.insertFrame(QTextFrameFormat())
    author_format = cursor.charFormat()
    author_format.setFontItalic(True)
    cursor.insertText(author, author_format)
    cursor.insertBlock()
    return frame, cursor.position()


def _plain(value: object) -> object:
    if isinstance(value, QBrush):
        return value.style(), value.color().name()
    if isinstance(value, QTextLength):
        return value.type(), value.rawValue()
    return value


def _format(properties: dict) -> list:
    # A list's object index differs between documents; the list itself is compared apart.
    skip = QTextFormat.Property.ObjectIndex
    return sorted((int(key), _plain(value)) for key, value in properties.items() if key != skip)


def region(frame: QTextFrame, start: int) -> list[tuple]:
    """Every block from ``start`` to the frame's end: text, block format, list, fragments and their formats."""
    document = frame.document()
    block, rows = document.findBlock(start), []
    while block.isValid() and block.position() <= frame.lastPosition():
        fragments, it = [], block.begin()
        while not it.atEnd():
            fragments.append((it.fragment().text(), _format(it.fragment().charFormat().properties())))
            it += 1
        text_list = block.textList()
        listed = (text_list.format().style(), text_list.itemNumber(block)) if text_list else None
        rows.append((block.text(), _format(block.blockFormat().properties()), listed, fragments))
        block = block.next()
    return rows


def region_text(frame: QTextFrame, start: int) -> str:
    return "\n".join(row[0] for row in region(frame, start))


def rendered_at_once(qapp, text: str) -> tuple[QTextDocument, QTextFrame, int, StreamingMarkdown]:
    document = QTextDocument()
    frame, start = add_message(document, "Assistant")
    message = StreamingMarkdown(frame, start, MarkdownRenderer(), "copy:")
    message.set_text(text)
    return document, frame, start, message


def test_streaming_in_small_chunks_ends_like_rendering_at_once(qapp) -> None:
    text = reply(3_000)
    document = QTextDocument()
    frame, start = add_message(document, "Assistant")
    message = StreamingMarkdown(frame, start, MarkdownRenderer(), "copy:")
    for end in range(20, len(text), 20):
        message.set_text(text[:end], partial=True)
    message.set_text(text)
    _, once_frame, once_start, _ = rendered_at_once(qapp, text)
    assert region_text(frame, start) == region_text(once_frame, once_start)
    assert region(frame, start) == region(once_frame, once_start)  # formats too
    assert "Reading a CSV file" in region_text(frame, start)
    assert "<b>not bold</b> <script>alert(1)</script>" in region_text(frame, start)


def test_plain_text_matches_qt_rendering_the_whole_html(qapp) -> None:
    text = reply(3_000).replace("| Column | Type |\n|---|---|\n| name | text |\n| size | int |\n\n", "")
    _, frame, start, _ = rendered_at_once(qapp, text)
    whole = QTextDocument()
    whole.setHtml(MarkdownRenderer().render(text, anchors=lambda index: f"copy:{index}").html)
    assert region_text(frame, start).strip() == whole.toPlainText().strip()


@pytest.mark.parametrize("seed", range(2))
def test_random_chunks_and_edits_end_like_rendering_at_once(qapp, seed: int) -> None:
    """Any chunking, and replacing the text (a regenerated reply), ends in the same document."""
    rng = random.Random(seed)
    for text, other in zip(random_documents(seed, 15), random_documents(seed + 100, 15)):
        document = QTextDocument()
        frame, start = add_message(document, "Assistant")
        message = StreamingMarkdown(frame, start, MarkdownRenderer(), "copy:")
        end = 0
        while end < len(other):
            end += rng.randint(1, 30)
            message.set_text(other[:end], partial=True)
        message.set_text(text[: rng.randint(0, len(text))], partial=True)
        message.set_text(text)
        _, once_frame, once_start, once = rendered_at_once(qapp, text)
        assert region(frame, start) == region(once_frame, once_start), text
        assert message.code_blocks() == once.code_blocks()


def test_document_shows_colours_and_copy_anchor(qapp) -> None:
    _, frame, start, _ = rendered_at_once(qapp, "Look:\n\n```python\ndef f():\n    return 1\n```\n")
    formats = [fmt for _, _, _, fragments in region(frame, start) for _, fmt in fragments]
    anchors = [dict(fmt).get(int(QTextFormat.Property.AnchorHref)) for fmt in formats]
    colours = {dict(fmt).get(int(QTextFormat.Property.ForegroundBrush)) for fmt in formats}
    assert "copy:0" in anchors
    assert len(colours) >= 3  # keyword, names, numbers in different colours
    assert "def f():\n    return 1" in region_text(frame, start)


def test_raw_html_shows_as_text_in_the_document(qapp) -> None:
    _, frame, start, _ = rendered_at_once(qapp, "Text <b>bold?</b> <script>alert(1)</script>")
    rows = region(frame, start)
    assert [row[0] for row in rows] == ["Text <b>bold?</b> <script>alert(1)</script>"]
    weight = int(QTextFormat.Property.FontWeight)
    assert all(dict(fmt).get(weight, 400) == 400 for _, _, _, fragments in rows for _, fmt in fragments)


def test_heading_and_code_keep_their_block_formats(qapp) -> None:
    """insertHtml would merge the first block into the body's line and drop its format."""
    _, frame, start, _ = rendered_at_once(qapp, "# Title\n\n```\ncode\n```\n")
    document = frame.document()
    title = document.findBlock(start)
    assert title.text() == "Title" and title.blockFormat().headingLevel() == 1
    code = title.next().next()
    assert code.text() == "code" and code.blockFormat().nonBreakableLines()


def test_empty_blocks_keep_their_formats_when_the_next_block_changes(qapp) -> None:
    """Qt gives a block emptied from its start the format of the last block removed."""
    document = QTextDocument()
    frame, start = add_message(document, "Assistant")
    message = StreamingMarkdown(frame, start, MarkdownRenderer(), "copy:")
    text = "- item\n\n* * *\n```python\nx = 1\ny = 2\n```\nDone."
    for end in range(1, len(text) + 1):
        message.set_text(text[:end], partial=True)
    message.set_text(text)
    _, once_frame, once_start, _ = rendered_at_once(qapp, text)
    assert region(frame, start) == region(once_frame, once_start)
    rule = document.findBlock(start).next()
    assert rule.text() == "" and rule.blockFormat().hasProperty(QTextFormat.Property.BlockTrailingHorizontalRulerWidth)
    message.set_text("")
    body = document.findBlock(start)
    assert body.text() == "" and body.textList() is None and body.next().position() > frame.lastPosition()


def test_a_table_is_followed_directly_by_the_next_block(qapp) -> None:
    """Qt keeps an empty block after a table; the next block fills it rather than following it."""
    text = "Sizes:\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nAfter the table."
    document = QTextDocument()
    frame, start = add_message(document, "Assistant")
    message = StreamingMarkdown(frame, start, MarkdownRenderer(), "copy:")
    for end in range(1, len(text) + 1):
        message.set_text(text[:end], partial=True)
    assert region_text(frame, start) == "Sizes:\na\nb\n1\n2\nAfter the table."
    assert QTextCursor(document.findBlock(start).next()).currentTable() is not None


def test_text_before_start_and_following_frames_are_untouched(qapp) -> None:
    document = QTextDocument()
    first, first_start = add_message(document, "You")
    QTextCursor(document.findBlock(first_start)).insertText("Hello there")
    reply_frame, start = add_message(document, "Assistant")
    later, later_start = add_message(document, "You")
    QTextCursor(document.findBlock(later_start)).insertText("A later message")
    author_before = region(reply_frame, reply_frame.firstPosition())[0]
    later_before = region(later, later.firstPosition())
    message = StreamingMarkdown(reply_frame, start, MarkdownRenderer(), "copy:")
    text = reply(1_500)
    for end in range(0, len(text) + 20, 20):
        message.set_text(text[:end], partial=True)
    message.set_text(text)
    author_after = region(reply_frame, reply_frame.firstPosition())[0]
    assert author_after == author_before
    assert region(later, later.firstPosition()) == later_before
    assert region_text(first, first.firstPosition()) == "You\nHello there"
    assert document.rootFrame().childFrames() == [first, reply_frame, later]
    assert region_text(reply_frame, start).startswith("Reading a CSV file")


def test_earlier_messages_may_change_while_streaming(qapp) -> None:
    """The body start is kept relative to its frame, so edits above it do not matter."""
    document = QTextDocument()
    first, first_start = add_message(document, "You")
    reply_frame, start = add_message(document, "Assistant")
    message = StreamingMarkdown(reply_frame, start, MarkdownRenderer(), "copy:")
    message.set_text("# Title\n\nFirst paragraph.\n\nSecond", partial=True)
    QTextCursor(document.findBlock(first_start)).insertText("A question that arrived late")
    message.set_text("# Title\n\nFirst paragraph.\n\nSecond paragraph.")
    assert region_text(reply_frame, reply_frame.firstPosition()) == (
        "Assistant\nTitle\nFirst paragraph.\nSecond paragraph."
    )


def test_code_blocks_returns_the_code_in_order(qapp) -> None:
    text = "A:\n\n```py\nprint(1)\n```\n\n- item\n  ```\n  nested\n  ```\n\n```bash\nls\n\n"
    _, _, _, message = rendered_at_once(qapp, text)
    assert message.code_blocks() == ["print(1)\n", "nested\n", "ls\n\n"]
    message.set_text("No code any more.")
    assert message.code_blocks() == []


def test_streamed_code_is_uncoloured_until_its_block_is_complete(qapp) -> None:
    document = QTextDocument()
    frame, start = add_message(document, "Assistant")
    message = StreamingMarkdown(frame, start, MarkdownRenderer(), "copy:")
    foreground = int(QTextFormat.Property.ForegroundBrush)

    def code_colours() -> set:
        return {dict(fmt).get(foreground) for row in region(frame, start) if row[0] == "x = 1" for _, fmt in row[3]}

    message.set_text("```python\nx = 1\n```\n", partial=True)
    assert len(code_colours()) == 1
    message.set_text("```python\nx = 1\n```\nDone", partial=True)
    assert len(code_colours()) > 1


def test_start_must_be_the_start_of_a_block_in_the_frame(qapp) -> None:
    document = QTextDocument()
    frame, start = add_message(document, "Assistant")
    with pytest.raises(ValueError):
        StreamingMarkdown(frame, start - 2, MarkdownRenderer(), "copy:")
    with pytest.raises(ValueError):
        StreamingMarkdown(frame, frame.lastPosition() + 1, MarkdownRenderer(), "copy:")


def test_a_megabyte_message_shows_its_beginning_and_copies_whole(qtbot) -> None:
    from PySide6.QtGui import QGuiApplication

    from gui.chat_view import SHOWN_CHARACTERS, ChatView, MessageView

    view = ChatView()
    qtbot.addWidget(view)
    huge = "x" * 1_000_000  # one enormous line, the worst case for Qt's layout
    view.append_message(MessageView(id="m", role="user", author="You", content=huge))
    shown = view.toPlainText()
    assert shown.count("x") == SHOWN_CHARACTERS
    assert "980,000 more characters not shown" in shown
    view._on_anchor(QUrl("copy:m"))
    assert QGuiApplication.clipboard().text() == huge
