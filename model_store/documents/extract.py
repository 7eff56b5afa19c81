"""Get the text out of a user's file: plain text, Markdown, code, logs, PDF, HTML, .docx.

Qt-free. :func:`extract_text` either returns the text (one entry per page for a
PDF) with its caveats as notes, or raises a :class:`~model_store.errors.DocumentError`
subclass whose reason is one sentence fragment ("it is protected by a password");
nothing else escapes for a bad, hostile or vanishing file. Text files are read
only as far as is kept (``max_text_bytes``), so a 500 MB log costs what its first
16 MB cost. :func:`looks_like_document` is the cheap by-name check used to skip
images, archives, programs and models when a folder is listed.

The text returned is already normalised (``\\n`` line ends, no NULs, no long runs
of blank lines), so offsets into it stay meaningful.
"""

from __future__ import annotations

import codecs
import logging
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import BinaryIO
from xml.parsers import expat

import charset_normalizer

from model_store.errors import DocumentError, DocumentVanishedError, EncryptedDocumentError, UnreadableDocumentError

MAX_TEXT_BYTES = 16 * 1024 * 1024  # text kept per file; the rest is left out with a note
MAX_FILE_BYTES = 256 * 1024 * 1024  # PDFs and .docx files larger than this are refused
MAX_XML_BYTES = 64 * 1024 * 1024  # a .docx part, unpacked: a zip bomb stops here
SNIFF_BYTES = 8192  # looked at to tell text from binary
DETECT_BYTES = 1024 * 1024  # given to charset_normalizer to guess an encoding

BINARY_SUFFIXES = frozenset("""
.png .jpg .jpeg .gif .bmp .tif .tiff .webp .ico .icns .heic .heif .avif .psd .xcf .svgz .raw .cr2 .nef .dng
.mp3 .wav .flac .ogg .oga .m4a .aac .opus .wma .mid .midi .aiff
.mp4 .mkv .mov .avi .webm .wmv .m4v .flv .mpg .mpeg .3gp
.zip .gz .tgz .bz2 .xz .zst .7z .rar .tar .lz .lz4 .lzma .cab .iso .dmg .img .deb .rpm .apk .jar .whl .egg
.exe .dll .so .dylib .o .a .lib .obj .bin .elf .class .pyc .pyo .pyd .wasm .msi .app .sys .ko
.gguf .ggml .safetensors .pt .pth .ckpt .onnx .pkl .pickle .joblib .npy .npz .h5 .hdf5 .parquet .feather .arrow
.ttf .otf .woff .woff2 .eot
.sqlite .sqlite3 .db .mdb .accdb .dbf .realm .lmdb
.doc .xls .ppt .xlsx .pptx .odt .ods .odp .rtf .pages .numbers .key .epub .mobi .azw3 .djvu .xps
""".split())
BINARY_NAMES = frozenset({".ds_store", "thumbs.db", "icon\r"})  # lower-case; files no suffix gives away
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})
SUPPORTED = "Hearth reads text, Markdown, code, PDF, HTML and .docx files"

log = logging.getLogger(__name__)
# A damaged PDF makes pypdf warn, and even log errors kilobytes long, on every object; each failure becomes
# a reason or a note here instead.
logging.getLogger("pypdf").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class ExtractedText:
    """A document's text.

    Attributes:
        title: The file name, or the HTML ``<title>``, PDF or .docx title when it has one.
        pages: (page number from 1, text) for a PDF; a single (None, text) otherwise.
        notes: Caveats, each a fragment after "<name>: " ("only its first 16 MB were indexed").
    """

    title: str
    pages: tuple[tuple[int | None, str], ...]
    notes: tuple[str, ...] = ()

    @property
    def chars(self) -> int:
        """Characters over all pages."""
        return sum(len(text) for _, text in self.pages)


def looks_like_document(path: Path) -> bool:
    """False for names that are surely not documents (images, archives, programs, models…).

    By name only, so a folder of 20,000 files can be listed without opening them.
    An unknown suffix is True: :func:`extract_text` then decides by content.
    """
    path = Path(path)
    return path.suffix.lower() not in BINARY_SUFFIXES and path.name.lower() not in BINARY_NAMES


def extract_text(path: Path, *, max_text_bytes: int = MAX_TEXT_BYTES) -> ExtractedText:
    """Read the text of ``path``.

    Args:
        path: The file.
        max_text_bytes: How much of a text file is kept; the rest is left out with a note.

    Returns:
        Its title, its text by page and any caveats.

    Raises:
        UnreadableDocumentError: Not a document Hearth reads (binary, unsupported, damaged, empty, not allowed).
        EncryptedDocumentError: It is protected by a password.
        DocumentVanishedError: It disappeared, or reading it failed, while Hearth read it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not looks_like_document(path):
        raise UnreadableDocumentError(path, f"{SUPPORTED}, not {suffix or path.name} files")
    try:
        _require_regular_file(path)
        if suffix == ".pdf":
            return _pdf(path)
        if suffix == ".docx":
            return _docx(path)
        return _text_file(path, max_text_bytes, html=suffix in HTML_SUFFIXES)
    except DocumentError:
        raise
    except FileNotFoundError as exc:
        raise DocumentVanishedError(path, "it was moved or deleted while Hearth read it") from exc
    except PermissionError as exc:
        raise UnreadableDocumentError(path, "Hearth may not read it (permission denied)") from exc
    except IsADirectoryError as exc:
        raise UnreadableDocumentError(path, "it is a folder, not a file") from exc
    except OSError as exc:
        cause = (exc.strerror or type(exc).__name__).lower()
        raise DocumentVanishedError(path, f"reading it failed ({cause})") from exc


def _require_regular_file(path: Path) -> None:
    # Checked before opening: opening a named pipe would wait for a writer for ever.
    mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        raise UnreadableDocumentError(path, "it is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise UnreadableDocumentError(path, "it is not a regular file (a device, pipe or socket)")


# ------------------------------------------------------------------ text


def _text_file(path: Path, max_bytes: int, *, html: bool) -> ExtractedText:
    """A text, Markdown, code or HTML file: its first ``max_bytes`` bytes, decoded."""
    with path.open("rb") as file:
        size = _file_size(file)
        data = file.read(min(size, max_bytes) + 1)  # one byte more tells whether there is more
    cut = len(data) > max_bytes
    data = data[:max_bytes]
    if not data:
        raise UnreadableDocumentError(path, "it is empty")
    if not html and data.startswith(b"%PDF-"):  # a PDF saved without its suffix
        return _pdf(path)
    text, notes = _decode(path, data, cut=cut, declared=_declared_charset(data) if html else None)
    if cut:
        notes.append(f"only its first {_size(max_bytes)} were indexed")
    if html:
        return _html(path, text, notes)
    return _finish(path, path.name, [(None, text)], notes)


def _decode(path: Path, data: bytes, *, cut: bool, declared: str | None = None) -> tuple[str, list[str]]:
    """The text, with a note when it is not UTF-8 (or UTF-16/32 with a BOM): the encoding it was read as."""
    bom = _bom_encoding(data)
    if bom:
        return _decode_as(data, bom, cut=cut), []
    if _looks_binary(data[:SNIFF_BYTES]):
        raise UnreadableDocumentError(path, "it is a binary file, not text")
    try:
        # final=False when cut: a character the cut split in two is left out, not an error.
        return codecs.getincrementaldecoder("utf-8")("strict").decode(data, final=not cut), []
    except UnicodeDecodeError:
        pass
    text = _decode_as(data, "utf-8", cut=cut)
    replaced = text.count("\ufffd")
    # Each valid multi-byte character adds at least one byte; each U+FFFD, two. Legacy text has almost no valid
    # UTF-8 sequences, so more of them than broken ones means UTF-8 with a few damaged bytes (a log cut mid-write).
    if len(text.encode("utf-8")) - len(text) - 2 * replaced >= replaced:
        damaged = f"{replaced:,} damaged character was" if replaced == 1 else f"{replaced:,} damaged characters were"
        return text, [f"it is not all valid UTF-8; {damaged} replaced"]
    encoding = declared or _guess_encoding(data)
    if encoding is None:
        raise UnreadableDocumentError(path, "it is not text in any encoding Hearth recognises")
    return _decode_as(data, encoding, cut=cut), [f"it is not UTF-8; it was read as {_encoding_name(encoding)}"]


def _decode_as(data: bytes, encoding: str, *, cut: bool) -> str:
    return codecs.getincrementaldecoder(encoding)("replace").decode(data, final=not cut)


def _bom_encoding(data: bytes) -> str | None:
    # UTF-32-LE's BOM begins with UTF-16-LE's, so UTF-32 is checked first.
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return encoding
    return None


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    # Tab, line ends, form feed, backspace and escape (coloured logs) are at home in text.
    control = sum(1 for byte in head if byte < 32 and byte not in (8, 9, 10, 12, 13, 27))
    return control > len(head) * 0.10


def _guess_encoding(data: bytes) -> str | None:
    matches = list(charset_normalizer.from_bytes(data[:DETECT_BYTES]))
    if not matches:
        return None
    best = matches[0]
    # charset_normalizer is unsure between single-byte Latin code pages (it reads French as Baltic cp1257);
    # when Windows-1252, by far the most common of them, gives the same text or nearly as clean a one, take it.
    close = (match for match in matches if match.chaos <= best.chaos + 0.1)
    if any("cp1252" in match.could_be_from_charset for match in close):
        return "cp1252"
    return best.encoding


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _declared_charset(data: bytes) -> str | None:
    """The encoding an HTML page declares in a ``<meta>`` near its top, when Python knows it."""
    found = _META_CHARSET.search(data[:4096])
    if not found:
        return None
    try:
        name = codecs.lookup(found.group(1).decode("ascii")).name
    except LookupError:
        return None
    if name.startswith("utf"):  # it is not (or it would have decoded): the declaration is wrong
        return None
    # As browsers do: pages that claim ASCII or Latin-1 are Windows-1252.
    return "cp1252" if name in ("ascii", "iso8859-1") else name


_ENCODING_NAMES = {"iso8859-1": "Latin-1", "shift_jis": "Shift JIS", "cp932": "Shift JIS (Windows)",
                   "euc_jp": "EUC-JP", "gb18030": "GB18030", "gbk": "GBK", "gb2312": "GB2312", "big5": "Big5",
                   "euc_kr": "EUC-KR", "cp949": "Korean (Windows)", "koi8-r": "KOI8-R", "mac-roman": "Mac Roman"}


def _encoding_name(encoding: str) -> str:
    name = codecs.lookup(encoding).name
    if re.fullmatch(r"cp125\d", name):
        return f"Windows-{name[2:]}"
    return _ENCODING_NAMES.get(name, name.replace("_", "-").upper())


def _size(count: int) -> str:
    mib = 1024 * 1024
    if count >= mib:
        return f"{count // mib} MB" if count % mib == 0 else f"{count / mib:.1f} MB"
    return f"{max(1, count // 1024)} KB"


def _finish(path: Path, title: str, pages: list[tuple[int | None, str]], notes: list[str]) -> ExtractedText:
    """Normalise the pages, drop empty ones, and refuse a document with no text at all."""
    cleaned = [(number, _normalise(text)) for number, text in pages]
    cleaned = [(number, text) for number, text in cleaned if text.strip()]
    if not cleaned:
        raise UnreadableDocumentError(path, "it has no text")
    return ExtractedText(title=" ".join(title.split()) or path.name, pages=tuple(cleaned), notes=tuple(notes))


_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return _BLANK_RUNS.sub("\n\n", text)


def _file_size(file: BinaryIO) -> int:
    return os.fstat(file.fileno()).st_size


def _refuse_huge(path: Path, file: BinaryIO, kind: str) -> None:
    size = _file_size(file)
    if size > MAX_FILE_BYTES:
        raise UnreadableDocumentError(path, f"it is {_size(size)}, more than the {_size(MAX_FILE_BYTES)} "
                                            f"Hearth reads of a {kind} file")


def _short(exc: BaseException) -> str:
    """The first line of an error, short enough to go in parentheses."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:80]


# ------------------------------------------------------------------- PDF


def _pdf(path: Path) -> ExtractedText:
    """A PDF, page by page, through pypdf; a page that fails is left out with a note."""
    # Opened here, so that from now on any error is about the content (pypdf reads the open file lazily).
    with path.open("rb") as file:
        _refuse_huge(path, file, "PDF")
        reader = _open_pdf(path, file)
        title = _pdf_title(reader) or path.name
        texts, failed = _pdf_pages(path, reader)
    blank = [number for number, text in texts if not text.strip()]
    if len(blank) == len(texts):
        if failed and not texts:
            raise UnreadableDocumentError(path, "it is a damaged PDF (no page could be read)")
        if not texts:
            raise UnreadableDocumentError(path, "it has no pages")
        raise UnreadableDocumentError(path, "it has no text layer (a scanned PDF needs OCR, which Hearth does not do)")
    notes = []
    if failed:
        notes.append(f"{_pages(failed)} could not be read")
    if blank:
        notes.append(f"{_pages(blank)} {'has' if len(blank) == 1 else 'have'} no text layer")
    return _finish(path, title, texts, notes)


def _open_pdf(path: Path, file: BinaryIO):
    """A pypdf reader with the document decrypted, or the reason it cannot be read."""
    from pypdf import PdfReader  # imported on first use: it takes a tenth of a second
    from pypdf.errors import DependencyError, FileNotDecryptedError

    try:
        reader = PdfReader(file)
        if reader.is_encrypted and not reader.decrypt(""):  # an empty user password is common
            raise EncryptedDocumentError(path, "it is protected by a password")
        len(reader.pages)  # reads the page tree, which is where a damaged file usually fails
        return reader
    except DocumentError:
        raise
    except FileNotDecryptedError as exc:
        raise EncryptedDocumentError(path, "it is protected by a password") from exc
    except DependencyError as exc:
        raise EncryptedDocumentError(path, "it is encrypted in a way this installation cannot read "
                                           f"({_short(exc)})") from exc
    except MemoryError as exc:
        raise UnreadableDocumentError(path, "it needs more memory to read than is free") from exc
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on hostile input
        raise UnreadableDocumentError(path, f"it is a damaged PDF ({_short(exc)})") from exc


def _pdf_pages(path: Path, reader) -> tuple[list[tuple[int | None, str]], list[int]]:
    """(number, text) of each page that could be read, and the numbers of those that could not."""
    texts: list[tuple[int | None, str]] = []
    failed: list[int] = []
    for number in range(1, len(reader.pages) + 1):
        try:
            texts.append((number, reader.pages[number - 1].extract_text() or ""))
        except Exception as exc:  # noqa: BLE001 - one bad page does not lose the rest
            log.info("Page %d of %s could not be read: %s", number, path.name, _short(exc))
            failed.append(number)
    return texts, failed


def _pdf_title(reader) -> str:
    try:
        title = str(reader.metadata.title or "") if reader.metadata else ""
    except Exception:  # noqa: BLE001 - a broken info dictionary only loses the title
        return ""
    return "" if title.strip().lower() in ("", "untitled") else title


def _pages(numbers: list[int]) -> str:
    shown = ", ".join(str(number) for number in numbers[:5])
    if len(numbers) > 5:
        shown += f" and {len(numbers) - 5} more"
    return f"page {shown}" if len(numbers) == 1 else f"pages {shown}"


# ------------------------------------------------------------------ HTML


class _HtmlText(HTMLParser):
    """Collects the visible text of an HTML page and its ``<title>``.

    A paragraph-like block ends with a blank line (the chunker's best boundary), a list item or table row with a
    line end, a table cell with a tab.
    """

    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "math"})
    PARAGRAPHS = frozenset({"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "header",
                            "footer", "main", "nav", "aside", "pre", "blockquote", "table", "ul", "ol", "dl",
                            "hr", "figure", "form", "fieldset", "details", "address", "body"})
    LINES = frozenset({"li", "tr", "dt", "dd", "caption", "figcaption", "summary", "option"})
    CELLS = frozenset({"td", "th"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skipping = 0
        self._pre = 0
        self._in_title = False
        self._line_ends = 1  # line ends the text so far ends with; the start counts as one

    @property
    def text(self) -> str:
        lines = [line.rstrip() for line in "".join(self.parts).split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title" and not self._skipping and not self.title:
            self._in_title = True
        elif tag in self.SKIP:
            self._skipping += 1
        elif tag == "pre":
            self._pre += 1
        if tag == "br":
            self._emit("\n")  # two in a row are a blank line, as on the page
        elif tag in self.CELLS and not self._line_ends:
            self._emit("\t")
        self._end_block(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP and self._skipping:
            self._skipping -= 1
        elif tag == "pre" and self._pre:
            self._pre -= 1
        self._end_block(tag)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._skipping:
            return
        elif self._pre:
            self._emit(data)
        else:
            # Outside <pre>, a line end in the markup is only a space on the page.
            text = re.sub(r"\s+", " ", data)
            self._emit(text.lstrip() if self._line_ends else text)

    def _end_block(self, tag: str) -> None:
        wanted = 2 if tag in self.PARAGRAPHS else 1 if tag in self.LINES else 0
        if self._line_ends < wanted:
            self._emit("\n" * (wanted - self._line_ends))

    def _emit(self, text: str) -> None:
        if text:
            self.parts.append(text)
            stripped = text.rstrip("\n")
            self._line_ends = len(text) - len(stripped) + (self._line_ends if not stripped else 0)


def _html(path: Path, markup: str, notes: list[str]) -> ExtractedText:
    parser = _HtmlText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception as exc:  # noqa: BLE001 - html.parser is lenient; this is for the unexpected
        raise UnreadableDocumentError(path, f"its HTML could not be read ({_short(exc)})") from exc
    return _finish(path, parser.title or path.name, [(None, parser.text)], notes)


# ----------------------------------------------------------------- .docx

_WORD_NAMESPACES = frozenset({"http://schemas.openxmlformats.org/wordprocessingml/2006/main",
                              "http://purl.oclc.org/ooxml/wordprocessingml/main"})  # transitional, strict
_COMPATIBILITY = "http://schemas.openxmlformats.org/markup-compatibility/2006"
_DUBLIN_CORE = "http://purl.org/dc/elements/1.1/"
_DAMAGED_DOCX = "it is a damaged .docx file"


def _docx(path: Path) -> ExtractedText:
    """A Word document's body text (stdlib zipfile and expat), a line per paragraph."""
    # Opened here, so that from now on any error is about the content.
    with path.open("rb") as file:
        _refuse_huge(path, file, ".docx")
        _refuse_old_office_container(path, file)
        try:
            with zipfile.ZipFile(file) as archive:
                document = _zip_member(path, archive, "word/document.xml")
                core = _zip_member(path, archive, "docProps/core.xml", required=False)
        except DocumentError:
            raise
        except Exception as exc:  # noqa: BLE001 - BadZipFile, EOFError, zlib.error, struct.error… on hostile input
            raise UnreadableDocumentError(path, f"{_DAMAGED_DOCX} ({_short(exc)})") from exc
    body = _WordText()
    _parse_xml(path, document, body)
    title = ""
    if core:
        properties = _CoreTitle()
        try:
            _parse_xml(path, core, properties)
            title = properties.title
        except DocumentError:
            log.info("The properties of %s could not be read; its file name is its title", path.name)
    return _finish(path, title or path.name, [(None, body.text)], [])


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")  # the stream a password-protected .docx keeps


def _refuse_old_office_container(path: Path, file: BinaryIO) -> None:
    """Tell a password-protected .docx, or a .doc renamed, from a damaged .docx: both are OLE files, not zips."""
    is_ole = file.read(len(_OLE_MAGIC)) == _OLE_MAGIC
    if is_ole:
        tail = b""
        while chunk := file.read(1024 * 1024):
            if _ENCRYPTED_PACKAGE in tail + chunk:
                raise EncryptedDocumentError(path, "it is protected by a password")
            tail = chunk[-len(_ENCRYPTED_PACKAGE):]
        raise UnreadableDocumentError(path, "it is an old-style Word file (.doc) under a .docx name, "
                                            "which Hearth cannot read")
    file.seek(0)


def _zip_member(path: Path, archive: zipfile.ZipFile, name: str, *, required: bool = True) -> bytes:
    """A member's bytes, refusing one that unpacks to more than MAX_XML_BYTES (whatever its header claims)."""
    try:
        info = archive.getinfo(name)
    except KeyError as exc:
        if not required:
            return b""
        raise UnreadableDocumentError(path, f"{_DAMAGED_DOCX} (it has no {name})") from exc
    too_big = f"its {name} would unpack to more than the {_size(MAX_XML_BYTES)} Hearth reads of a .docx file"
    if info.file_size > MAX_XML_BYTES:
        raise UnreadableDocumentError(path, too_big)
    with archive.open(info) as member:
        data = member.read(MAX_XML_BYTES + 1)
    if len(data) > MAX_XML_BYTES:
        raise UnreadableDocumentError(path, too_big)
    return data


def _parse_xml(path: Path, data: bytes, handler: _WordText | _CoreTitle) -> None:
    """Feed ``data`` to ``handler`` through expat, refusing any DTD (entity bombs and external entities need one)."""

    def refuse(*_args) -> None:
        raise UnreadableDocumentError(path, f"{_DAMAGED_DOCX} (it declares XML entities, which Word never does)")

    parser = expat.ParserCreate(namespace_separator=" ")
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.buffer_text = True
    parser.StartElementHandler = handler.start
    parser.EndElementHandler = handler.end
    parser.CharacterDataHandler = handler.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise UnreadableDocumentError(path, f"{_DAMAGED_DOCX} ({_short(exc)})") from exc


class _WordText:
    """expat handlers that collect ``word/document.xml``'s text: ``w:p`` to lines, ``w:t``, ``w:tab``, ``w:br``."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._parts: list[str] = []
        self._runs = 0  # w:tab outside a run is a tab stop's definition, not a tab
        self._in_text = False
        self._fallback = 0  # mc:Fallback repeats what mc:Choice holds (text boxes)

    @property
    def text(self) -> str:
        return "\n".join(self.lines + (["".join(self._parts)] if self._parts else []))

    def start(self, name: str, _attrs) -> None:
        namespace, _, local = name.rpartition(" ")
        if namespace == _COMPATIBILITY and local == "Fallback":
            self._fallback += 1
        if self._fallback or namespace not in _WORD_NAMESPACES:
            return
        if local == "r":
            self._runs += 1
        elif local == "t" and self._runs:
            self._in_text = True
        elif local == "tab" and self._runs:
            self._parts.append("\t")
        elif local in ("br", "cr") and self._runs:
            self._parts.append("\n")
        elif local == "noBreakHyphen":
            self._parts.append("-")

    def end(self, name: str) -> None:
        namespace, _, local = name.rpartition(" ")
        if namespace == _COMPATIBILITY and local == "Fallback":
            self._fallback -= 1
        if self._fallback or namespace not in _WORD_NAMESPACES:
            return
        if local == "r":
            self._runs -= 1
        elif local == "t":
            self._in_text = False
        elif local == "p":
            self.lines.append("".join(self._parts))
            self._parts = []

    def data(self, text: str) -> None:
        if self._in_text and not self._fallback:
            self._parts.append(text)


class _CoreTitle:
    """expat handlers that find ``dc:title`` in ``docProps/core.xml``."""

    def __init__(self) -> None:
        self.title = ""
        self._inside = False

    def start(self, name: str, _attrs) -> None:
        self._inside = name == f"{_DUBLIN_CORE} title"

    def end(self, _name: str) -> None:
        self._inside = False

    def data(self, text: str) -> None:
        if self._inside:
            self.title += text
