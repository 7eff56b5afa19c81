"""Get the text out of a user's file: plain text, Markdown, code, PDF, HTML, .docx.

Qt-free. :func:`extract_text` either returns the text (pages for a PDF) with
caveats, or raises a :class:`~model_store.errors.DocumentError` whose reason is
one sentence fragment ("it is protected by a password"); nothing else escapes
for a bad file. Text files are read only as far as is kept
(``max_text_bytes``), so a 500 MB log costs what its first 16 MB cost.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
import zipfile
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

from model_store.errors import DocumentError, DocumentVanishedError, EncryptedDocumentError, UnreadableDocumentError

MAX_TEXT_BYTES = 16 * 1024 * 1024  # text kept per file; the rest is left out with a note
MAX_FILE_BYTES = 256 * 1024 * 1024  # PDFs and .docx files larger than this are refused
SNIFF_BYTES = 8192
MAX_DOCX_XML_BYTES = 64 * 1024 * 1024  # document.xml, uncompressed: a zip bomb stops here

BINARY_SUFFIXES = frozenset("""
.png .jpg .jpeg .gif .bmp .tif .tiff .webp .ico .icns .heic .psd .svgz .raw .cr2 .nef
.mp3 .wav .flac .ogg .oga .m4a .aac .opus .wma .mid .midi
.mp4 .mkv .mov .avi .webm .wmv .m4v .flv .mpg .mpeg
.zip .gz .tgz .bz2 .xz .zst .7z .rar .tar .lz .lzma .cab .iso .dmg .img .deb .rpm .apk .jar .whl .egg
.exe .dll .so .dylib .o .a .lib .obj .bin .elf .class .pyc .pyo .pyd .wasm .msi .app
.gguf .ggml .safetensors .pt .pth .ckpt .onnx .pkl .pickle .joblib .npy .npz .h5 .hdf5 .parquet .feather .arrow
.ttf .otf .woff .woff2 .eot
.sqlite .sqlite3 .db .mdb .accdb .dbf .realm
.doc .xls .ppt .xlsx .pptx .odt .ods .odp .rtf .pages .numbers .key .epub .mobi .azw3 .djvu .xps
""".split())
HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml"})

log = logging.getLogger(__name__)
logging.getLogger("pypdf").setLevel(logging.ERROR)  # hostile PDFs make it warn on every object


@dataclass(frozen=True)
class ExtractedText:
    """A document's text.

    ``pages``: (page number from 1, text) for a PDF; a single (None, text) otherwise.
    ``notes``: caveats, each a fragment after "<name>: " ("only its first 16 MB were read").
    """

    title: str
    pages: tuple[tuple[int | None, str], ...]
    notes: tuple[str, ...] = ()

    @property
    def chars(self) -> int:
        """Characters over all pages."""
        return sum(len(text) for _, text in self.pages)


def looks_like_document(path: Path) -> bool:
    """False for names that are surely not documents (images, archives, programs, models…); cheap, by name only."""
    return Path(path).suffix.lower() not in BINARY_SUFFIXES


def extract_text(path: Path, *, max_text_bytes: int = MAX_TEXT_BYTES) -> ExtractedText:
    """The text of ``path``; raises a DocumentError subclass (only) when it cannot be read."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in BINARY_SUFFIXES:
        raise UnreadableDocumentError(path, f"Hearth reads text, Markdown, code, PDF, HTML and .docx files, "
                                            f"not {suffix} files")
    try:
        if suffix == ".pdf":
            return _pdf(path)
        if suffix == ".docx":
            return _docx(path)
        text, notes = _read_text(path, max_text_bytes)
        if suffix in HTML_SUFFIXES:
            return _html(path, text, notes)
        return _finish(path, path.name, [(None, text)], notes)
    except DocumentError:
        raise
    except FileNotFoundError as exc:
        raise DocumentVanishedError(path, "it was moved or deleted while Hearth read it") from exc
    except PermissionError as exc:
        raise UnreadableDocumentError(path, "Hearth may not read it (permission denied)") from exc
    except IsADirectoryError as exc:
        raise UnreadableDocumentError(path, "it is a folder, not a file") from exc
    except OSError as exc:
        raise DocumentVanishedError(path, f"it could not be read ({exc.strerror or exc.__class__.__name__})") from exc


# ------------------------------------------------------------------ text


def _read_text(path: Path, max_bytes: int) -> tuple[str, list[str]]:
    with path.open("rb") as file:
        data = file.read(max_bytes + 1)
        cut = len(data) > max_bytes
        if cut:
            data = data[:max_bytes]
    if not data.strip():
        raise UnreadableDocumentError(path, "it is empty")
    text, notes = _decode(path, data, cut)
    if cut:
        notes.append(f"only its first {max_bytes // (1024 * 1024) or 1} MB were read")
    return text, notes


def _decode(path: Path, data: bytes, cut: bool) -> tuple[str, list[str]]:
    for bom, encoding in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                          (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                          (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            text = data.decode(encoding, errors="replace")
            if _looks_garbled(text[:SNIFF_BYTES]):  # random bytes can start like a byte order mark
                raise UnreadableDocumentError(path, "it is a binary file, not text")
            return text, []
    if _looks_binary(data[:SNIFF_BYTES]):
        raise UnreadableDocumentError(path, "it is a binary file, not text")
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as exc:
        if cut and exc.start >= len(data) - 3:  # the cut split a character
            return data[:exc.start].decode("utf-8"), []
    import charset_normalizer

    matches = list(charset_normalizer.from_bytes(data[:1 << 20]))
    if not matches:
        raise UnreadableDocumentError(path, "its text is in no encoding Hearth recognises")
    best = matches[0]
    # Short Western text fits several code pages equally well; Windows-1252 is by far the most common of them.
    ties = {m.encoding for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)}
    encoding = "cp1252" if "cp1252" in ties else best.encoding
    return data.decode(encoding, errors="replace"), [f"it is not UTF-8; it was read as {_encoding_name(encoding)}"]


def _encoding_name(encoding: str) -> str:
    names = {"cp1252": "Windows-1252", "latin_1": "Latin-1", "iso8859_1": "Latin-1", "cp1251": "Windows-1251",
             "shift_jis": "Shift JIS", "euc_jp": "EUC-JP", "gb18030": "GB18030", "big5": "Big5",
             "utf_16": "UTF-16", "cp1250": "Windows-1250", "koi8_r": "KOI8-R", "mac_roman": "Mac Roman"}
    return names.get(encoding.lower(), encoding.replace("_", "-").upper())


def _looks_binary(head: bytes) -> bool:
    if b"\x00" in head:
        return True
    control = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return bool(head) and control / len(head) > 0.10


def _looks_garbled(text: str) -> bool:
    bad = sum(1 for c in text if c == "\ufffd" or (c < " " and c not in "\t\n\r\f\x1b"))
    return bool(text) and bad / len(text) > 0.10


def _finish(path: Path, title: str, pages: list[tuple[int | None, str]], notes: list[str]) -> ExtractedText:
    cleaned = [(number, _normalise(text)) for number, text in pages]
    cleaned = [(number, text) for number, text in cleaned if text.strip()]
    if not cleaned:
        raise UnreadableDocumentError(path, "it has no text")
    return ExtractedText(title=title.strip() or path.name, pages=tuple(cleaned), notes=tuple(notes))


_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")


def _normalise(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return _BLANK_RUNS.sub("\n\n", text)


# ------------------------------------------------------------------- PDF


def _pdf(path: Path) -> ExtractedText:
    _refuse_huge(path)
    from pypdf import PdfReader

    try:
        reader = PdfReader(path)
        if reader.is_encrypted and not reader.decrypt(""):  # an empty user password is common
            raise EncryptedDocumentError(path, "it is protected by a password")
        pages = reader.pages
        count = len(pages)
        title = _pdf_title(reader) or path.name
    except DocumentError:
        raise
    except (OSError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on hostile input
        if "password" in str(exc).lower() or exc.__class__.__name__ == "FileNotDecryptedError":
            raise EncryptedDocumentError(path, "it is protected by a password") from exc
        raise UnreadableDocumentError(path, f"it is a damaged PDF ({_short(exc)})") from exc
    texts: list[tuple[int | None, str]] = []
    failed: list[int] = []
    for number in range(1, count + 1):
        try:
            texts.append((number, pages[number - 1].extract_text() or ""))
        except (OSError, MemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - one bad page does not lose the rest
            log.info("Page %d of %s could not be read: %s", number, path.name, exc)
            failed.append(number)
    notes = [f"{_pages(failed)} could not be read"] if failed else []
    if not any(text.strip() for _, text in texts):
        if failed and len(failed) == count:
            raise UnreadableDocumentError(path, "it is a damaged PDF (no page could be read)")
        raise UnreadableDocumentError(path, "it has no text layer (a scanned PDF needs OCR, which Hearth does not do)")
    return _finish(path, title, texts, notes)


def _pdf_title(reader) -> str:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # noqa: BLE001 - a broken info dictionary only loses the title
        return ""
    return str(title).strip() if title and str(title).strip() not in ("untitled", "Untitled") else ""


def _pages(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:5]) + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")
    return f"page {shown}" if len(numbers) == 1 else f"pages {shown}"


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return text[:80]


def _refuse_huge(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UnreadableDocumentError(path, f"it is {size / 1e6:,.0f} MB, more than Hearth reads of a PDF or "
                                            f".docx file ({MAX_FILE_BYTES // 1_000_000} MB)")


# ------------------------------------------------------------------ HTML


class _HtmlText(HTMLParser):
    SKIP = frozenset({"script", "style", "noscript", "template", "head", "svg"})
    BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
                        "header", "footer", "pre", "blockquote", "table", "ul", "ol", "dd", "dt", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skipping = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self.SKIP:
            self._skipping += 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self.SKIP and self._skipping:
            self._skipping -= 1
        if tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skipping:
            self.parts.append(data)


def _html(path: Path, markup: str, notes: list[str]) -> ExtractedText:
    parser = _HtmlText()
    try:
        parser.feed(markup)
        parser.close()
    except Exception as exc:  # noqa: BLE001 - html.parser is lenient; this is for the unexpected
        raise UnreadableDocumentError(path, f"its HTML could not be read ({_short(exc)})") from exc
    lines = (re.sub(r"[ \t\f\v]+", " ", line).strip() for line in "".join(parser.parts).split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return _finish(path, " ".join(parser.title.split()) or path.name, [(None, text)], notes)


# ----------------------------------------------------------------- .docx

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _docx(path: Path) -> ExtractedText:
    _refuse_huge(path)
    damaged = "it is a damaged .docx file"
    try:
        with zipfile.ZipFile(path) as archive:
            xml = _zip_member(archive, "word/document.xml", path)
            core = _zip_member(archive, "docProps/core.xml", path, required=False)
    except zipfile.BadZipFile as exc:
        raise UnreadableDocumentError(path, damaged) from exc
    root = _parse_xml(xml, path, damaged)
    paragraphs: list[str] = []
    for paragraph in root.iter(f"{_W}p"):
        parts: list[str] = []
        for node in paragraph.iter():
            if node.tag == f"{_W}t" and node.text:
                parts.append(node.text)
            elif node.tag == f"{_W}tab":
                parts.append("\t")
            elif node.tag in (f"{_W}br", f"{_W}cr"):
                parts.append("\n")
        paragraphs.append("".join(parts))
    title = ""
    if core:
        try:
            found = _parse_xml(core, path, damaged).find("{http://purl.org/dc/elements/1.1/}title")
            title = (found.text or "").strip() if found is not None else ""
        except DocumentError:
            title = ""
    return _finish(path, title or path.name, [(None, "\n".join(paragraphs))], [])


def _zip_member(archive: zipfile.ZipFile, name: str, path: Path, *, required: bool = True) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError as exc:
        if not required:
            return b""
        raise UnreadableDocumentError(path, "it is a damaged .docx file (it has no document text)") from exc
    if info.file_size > MAX_DOCX_XML_BYTES:
        raise UnreadableDocumentError(path, "its text would unpack to more than Hearth reads of a .docx file")
    try:
        with archive.open(info) as member:
            data = member.read(MAX_DOCX_XML_BYTES + 1)
    except (zipfile.BadZipFile, ValueError, NotImplementedError, EOFError, RuntimeError) as exc:
        raise UnreadableDocumentError(path, "it is a damaged .docx file") from exc
    if len(data) > MAX_DOCX_XML_BYTES:
        raise UnreadableDocumentError(path, "its text would unpack to more than Hearth reads of a .docx file")
    return data


def _parse_xml(data: bytes, path: Path, damaged: str) -> ElementTree.Element:
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:  # Word never writes them; entity bombs need them
        raise UnreadableDocumentError(path, f"{damaged} (it declares XML entities)")
    try:
        return ElementTree.parse(io.BytesIO(data)).getroot()
    except ElementTree.ParseError as exc:
        raise UnreadableDocumentError(path, damaged) from exc
