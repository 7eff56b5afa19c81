"""Markdown rendering figures: the cost of one streamed flush as a reply grows.

    QT_QPA_PLATFORM=offscreen python tests/benchmarks/render_figures.py [--repeats N] [--no-undo]

Streams a realistic Markdown reply (headings, paragraphs, lists, a quote, a
table, several highlighted code blocks) into a message frame of a shown
QTextBrowser through StreamingMarkdown (``set_text(..., partial=True)``),
about 40 characters per flush, with the event loop run between flushes as in
the app. The document keeps its undo stack, as ChatView's does today, unless
``--no-undo``. Reports:

- ``render_ms_per_flush_p95_8k`` / ``_32k``: p95 of the ``set_text`` calls
  while the reply is 7,000-9,000 / 30,000-34,000 characters long;
- ``full_rerender_ms_8k`` / ``_32k``: the baseline, rendering the whole reply
  of that size from scratch into a fresh frame (median of the repeats).

Lines before the last say how much of each flush is Markdown + Pygments
and how long the event loop (layout, paint) takes after it. The last line
printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from PySide6.QtGui import QTextCursor, QTextFrameFormat  # noqa: E402
from PySide6.QtWidgets import QApplication, QTextBrowser  # noqa: E402

from gui.markdown_render import MarkdownRenderer, StreamingMarkdown  # noqa: E402

CHUNK = 40
WINDOWS = {"8k": (7_000, 9_000), "32k": (30_000, 34_000)}

SECTION = """\
## Step {n}: loading the data

To read the file we open it once and parse each line. The *important* part is
that `parse_line` never raises on a bad line: it returns **None**, and the caller
skips it. See [the docs](https://docs.python.org/3/library/csv.html) for details.

- keep the reader lazy, so memory stays flat
- count skipped lines and report them at the end
- use `pathlib.Path` rather than string paths

```python
from pathlib import Path


def load(path: Path) -> list[dict[str, str]]:
    \"\"\"Read a CSV file into dictionaries, skipping bad lines.\"\"\"
    rows, skipped = [], 0
    with path.open(encoding="utf-8") as handle:
        header = handle.readline().rstrip("\\n").split(",")
        for number, line in enumerate(handle, start=2):
            values = line.rstrip("\\n").split(",")
            if len(values) != len(header):
                skipped += 1  # a ragged line: report, don't crash
                continue
            rows.append(dict(zip(header, values)))
    print(f"{{len(rows)}} rows, {{skipped}} skipped")
    return rows
```

> Note: on Windows, pass `newline=""` when you open the file for writing.

1. Run the script once with a small file.
2. Check the counts it prints.
3. Then run it on the full data set:

   ```bash
   python load.py data/all-{n}.csv --verbose
   ```

| Option | Meaning | Default |
|---|---|---|
| `--verbose` | print every skipped line | off |
| `--limit N` | stop after N rows | none |

The same idea in JavaScript, for the web front end:

```javascript
export async function load(url) {{
  const response = await fetch(url);
  const text = await response.text();
  return text.split("\\n").slice(1).map((line) => line.split(","));
}}
```

That's all for step {n}. Next we clean the values.

"""


def reply_text(length: int) -> str:
    """A Markdown reply of at least ``length`` characters."""
    parts, n = ["# Loading and cleaning a CSV file\n\nHere is a plan in several steps.\n\n"], 1
    while sum(map(len, parts)) < length:
        parts.append(SECTION.format(n=n))
        n += 1
    return "".join(parts)


def new_message(browser: QTextBrowser) -> tuple:
    """Append a message frame with an author line; return the frame and the body start."""
    cursor = QTextCursor(browser.document())
    cursor.movePosition(QTextCursor.MoveOperation.End)
    frame = cursor.insertFrame(QTextFrameFormat())
    cursor.insertText("Assistant")
    cursor.insertBlock()
    return frame, cursor.position()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def new_view(*, undo: bool) -> QTextBrowser:
    browser = QTextBrowser()
    browser.document().setUndoRedoEnabled(undo)
    browser.resize(900, 700)
    browser.show()
    return browser


def stream_once(app: QApplication, text: str, *, undo: bool) -> dict[str, list[float]]:
    """Stream ``text`` into a fresh view; per window, the set_text and event-loop times (ms)."""
    browser = new_view(undo=undo)
    renderer = MarkdownRenderer()
    frame, start = new_message(browser)
    message = StreamingMarkdown(frame, start, renderer, "copy:0/")
    times: dict[str, list[float]] = {f"{name}_{kind}": [] for name in WINDOWS for kind in ("set", "loop")}
    for end in range(CHUNK, len(text) + CHUNK, CHUNK):
        began = time.perf_counter()
        message.set_text(text[:end], partial=True)
        rendered = time.perf_counter()
        app.processEvents()
        looped = time.perf_counter()
        for name, (low, high) in WINDOWS.items():
            if low <= end <= high:
                times[f"{name}_set"].append((rendered - began) * 1000)
                times[f"{name}_loop"].append((looped - rendered) * 1000)
    browser.close()
    browser.deleteLater()
    app.processEvents()
    return times


def full_render_ms(app: QApplication, text: str, *, undo: bool) -> float:
    """Time to render ``text`` from scratch into a new frame of a shown view."""
    browser = new_view(undo=undo)
    app.processEvents()
    frame, start = new_message(browser)
    message = StreamingMarkdown(frame, start, MarkdownRenderer(), "copy:0/")
    began = time.perf_counter()
    message.set_text(text)
    elapsed = (time.perf_counter() - began) * 1000
    browser.close()
    browser.deleteLater()
    app.processEvents()
    return elapsed


def markdown_only_ms(text: str) -> float:
    """Time to turn the last block of ``text`` into HTML, without Qt (for the breakdown)."""
    renderer = MarkdownRenderer()
    began = time.perf_counter()
    renderer.render(text[-600:])
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="streamed replies (flush times are pooled)")
    parser.add_argument("--no-undo", action="store_true", help="turn the document's undo stack off")
    args = parser.parse_args()
    undo = not args.no_undo
    app = QApplication.instance() or QApplication(sys.argv)
    text = reply_text(WINDOWS["32k"][1])
    pooled: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for key, values in stream_once(app, text, undo=undo).items():
            pooled.setdefault(key, []).extend(values)
    full = {
        name: statistics.median(full_render_ms(app, text[: (low + high) // 2], undo=undo) for _ in range(args.repeats))
        for name, (low, high) in WINDOWS.items()
    }
    for name in WINDOWS:
        sets, loops = pooled[f"{name}_set"], pooled[f"{name}_loop"]
        print(f"{name}: {len(sets)} flushes, set_text median {statistics.median(sets):.2f} ms, "
              f"p95 {percentile(sets, 0.95):.2f} ms, max {max(sets):.2f} ms; "
              f"event loop after it p95 {percentile(loops, 0.95):.2f} ms")
    print(f"markdown-it + Pygments for a 600-character tail: {markdown_only_ms(text):.2f} ms")
    print(json.dumps({
        "render_ms_per_flush_p95_8k": round(percentile(pooled["8k_set"], 0.95), 2),
        "render_ms_per_flush_p95_32k": round(percentile(pooled["32k_set"], 0.95), 2),
        "full_rerender_ms_8k": round(full["8k"], 1),
        "full_rerender_ms_32k": round(full["32k"], 1),
    }))


if __name__ == "__main__":
    main()
