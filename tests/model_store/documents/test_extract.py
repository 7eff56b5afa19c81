"""extract_text on real files: encodings, a 500 MB log, real and hostile PDFs, HTML, hand-made .docx files."""

from __future__ import annotations

import os
import random
import sys
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model_store.documents.extract import (
    MAX_FILE_BYTES, MAX_TEXT_BYTES, MAX_XML_BYTES, ExtractedText, extract_text, looks_like_document,
)
from model_store.errors import DocumentError, DocumentVanishedError, EncryptedDocumentError, UnreadableDocumentError
from tests.model_store.documents.fixtures import core_xml, document_xml, encrypt_pdf, write_docx, write_pdf

MiB = 1024 * 1024


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _text(extracted: ExtractedText) -> str:
    assert len(extracted.pages) == 1 and extracted.pages[0][0] is None
    return extracted.pages[0][1]


def _refused(path: Path, error: type[DocumentError] = UnreadableDocumentError, **kwargs) -> DocumentError:
    with pytest.raises(error) as caught:
        extract_text(path, **kwargs)
    assert type(caught.value) is error
    assert str(caught.value).startswith(f"{path.name} was not added: ") and not caught.value.reason.endswith(".")
    return caught.value


@pytest.fixture(scope="module")
def three_page_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pdf")
    return write_pdf(folder / "report.pdf", ["Alpha on the first page.", "Beta on the second page.",
                                             "Gamma on the third page."], title="Quarterly report")


# ------------------------------------------------------------------ text


def test_utf8_with_a_bom_loses_the_bom_and_has_no_notes(tmp_path: Path) -> None:
    extracted = extract_text(_write(tmp_path / "notes.txt", "\ufeffHello, wörld — ✓\n".encode("utf-8")))
    assert _text(extracted) == "Hello, wörld — ✓\n"
    assert extracted.title == "notes.txt" and extracted.notes == () and extracted.chars == len("Hello, wörld — ✓\n")


def test_markdown_and_python_source_keep_their_shape(tmp_path: Path) -> None:
    markdown = "# Title\n\n- one\n- two\n\n```py\nprint(1)\n```\n"
    assert _text(extract_text(_write(tmp_path / "readme.md", markdown.encode()))) == markdown
    source = "def f(x):\n    if x:\n\treturn 1\n\n\n\n\nclass A:\n    pass\n"
    assert _text(extract_text(_write(tmp_path / "mod.py", source.encode()))) == (
        "def f(x):\n    if x:\n\treturn 1\n\nclass A:\n    pass\n")


def test_line_ends_and_blank_runs_are_normalised(tmp_path: Path) -> None:
    text = _text(extract_text(_write(tmp_path / "dos.log", b"one\r\ntwo\r\n\r\n\r\n \r\n\r\nthree\rfour\n")))
    assert text == "one\ntwo\n\nthree\nfour\n"


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_western_single_byte_text_is_read_and_the_note_names_the_encoding(tmp_path: Path, encoding: str) -> None:
    original = ("Le café de la gare est fermé le dimanche. Très tôt, à l'aube, les garçons déjà là "
                "mangent une crème brûlée près de la façade.\n") * 5
    if encoding == "cp1252":
        original += "Prix : 12 € « net »\n"
    extracted = extract_text(_write(tmp_path / "menu.txt", original.encode(encoding)))
    assert _text(extracted) == original
    assert extracted.notes == ("it is not UTF-8; it was read as Windows-1252",)


@pytest.mark.parametrize(("encoding", "name", "original"), [
    ("cp1251", "Windows-1251", "Привет! Это проверка кодировки, и в ней есть русские слова.\n" * 5),
    ("koi8_r", "KOI8-R", "Привет! Это проверка кодировки, и в ней есть русские слова.\n" * 5),
    ("shift_jis", "Shift JIS (Windows)", "日本語のテキストです。これはテストです。\n" * 5),
    ("cp1250", "Windows-1250", "Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig.\n" * 5),
])
def test_other_legacy_encodings_are_recognised(tmp_path: Path, encoding: str, name: str, original: str) -> None:
    extracted = extract_text(_write(tmp_path / "legacy.txt", original.encode(encoding)))
    assert _text(extracted) == original and extracted.notes == (f"it is not UTF-8; it was read as {name}",)


def test_utf8_with_a_few_damaged_bytes_stays_utf8(tmp_path: Path) -> None:
    good = "Überprüfung läuft — 12 ms\n" * 50
    extracted = extract_text(_write(tmp_path / "app.log", good.encode() + b"cut \xe2\x80 here\n"))
    assert _text(extracted) == good + "cut \ufffd here\n"
    assert extracted.notes == ("it is not all valid UTF-8; 1 damaged character was replaced",)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_a_bom(tmp_path: Path, encoding: str) -> None:
    original = "Grüße aus Köln — 日本語も\nzweite Zeile\n"
    data = original.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    extracted = extract_text(_write(tmp_path / "grüße.txt", data))
    assert _text(extracted) == original and extracted.notes == ()


def test_a_big_log_is_cut_at_max_text_bytes_without_reading_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "server.log"
    line = "2026-12-02T10:00:00 INFO request handled in 12 ms by worker ünïcode\n".encode()
    with path.open("wb") as file:
        for _ in range(20 * MiB // len(line)):
            file.write(line)
    tracemalloc.start()
    try:
        extracted = extract_text(path, max_text_bytes=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    text = _text(extracted)
    assert text.startswith(line.decode()) and "\ufffd" not in text
    assert len(text.encode()) <= 1_000_000 and len(text.encode()) > 999_000
    assert extracted.notes == ("only its first 976 KB were indexed",)
    assert peak < 8 * 1_000_000  # what is kept, a few times over: not the 20 MB file


def test_a_cut_never_splits_a_utf8_character(tmp_path: Path) -> None:
    path = _write(tmp_path / "accents.txt", "é".encode() * 1000)  # two bytes each
    text = _text(extract_text(path, max_text_bytes=1001))
    assert text == "é" * 500
    assert extract_text(path, max_text_bytes=1001).notes == ("only its first 1 KB were indexed",)


def test_a_500_mb_sparse_log_is_cut_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "huge.log"
    lines = b"".join(b"line %06d of a log that goes on and on\n" % n for n in range(2000))  # ~80 KB of text
    with path.open("wb") as file:
        file.write(lines)
        file.truncate(500 * MiB)  # the rest is a hole: NUL bytes that take no disk
    extracted = extract_text(path)
    assert _text(extracted) == lines.decode()  # the NULs of the hole are dropped
    assert extracted.notes == (f"only its first {MAX_TEXT_BYTES // MiB} MB were indexed",)


def test_a_500_mb_sparse_file_with_a_short_prefix_is_binary(tmp_path: Path) -> None:
    path = tmp_path / "mostly-hole.txt"
    with path.open("wb") as file:
        file.write(b"a short header\n")
        file.truncate(500 * MiB)
    assert _refused(path).reason == "it is a binary file, not text"


def test_random_bytes_are_a_binary_file(tmp_path: Path) -> None:
    data = random.Random(7).randbytes(64 * 1024) + b"\x00"
    assert _refused(_write(tmp_path / "blob", data)).reason == "it is a binary file, not text"
    controls = bytes(range(1, 32)) * 300  # no NUL, but no text either
    assert _refused(_write(tmp_path / "controls.txt", controls)).reason == "it is a binary file, not text"


def test_known_binary_suffixes_are_refused_by_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "photo.PNG", b"hello")  # a name is enough, whatever the content
    error = _refused(path)
    assert error.reason == "Hearth reads text, Markdown, code, PDF, HTML and .docx files, not .png files"


@pytest.mark.parametrize("name", ["a.png", "b.exe", "c.so", "d.pyc", "e.zip", "f.gguf", "g.safetensors", "h.pkl",
                                  "i.mp4", "j.sqlite", "k.doc", "l.woff2", ".DS_Store", "m.tar.gz"])
def test_looks_like_document_skips_what_is_surely_not_text(name: str) -> None:
    assert looks_like_document(Path(name)) is False


@pytest.mark.parametrize("name", ["a.txt", "b.md", "c.py", "d.pdf", "e.docx", "f.html", "Makefile", "g.weird",
                                  "h.csv", "i.log", ".bashrc", "j.json"])
def test_looks_like_document_lets_text_and_unknown_names_through(name: str) -> None:
    assert looks_like_document(Path(name)) is True


def test_an_empty_file_and_a_blank_one(tmp_path: Path) -> None:
    assert _refused(_write(tmp_path / "empty.txt", b"")).reason == "it is empty"
    assert _refused(_write(tmp_path / "blank.md", b" \n\n\t\n")).reason == "it has no text"


def test_a_pdf_without_its_suffix_is_read_as_a_pdf(tmp_path: Path, three_page_pdf: Path) -> None:
    extracted = extract_text(_write(tmp_path / "download", three_page_pdf.read_bytes()))
    assert [number for number, _ in extracted.pages] == [1, 2, 3]


# ------------------------------------------------------------------- PDF


def test_a_pdf_has_one_entry_per_page_and_its_metadata_title(three_page_pdf: Path) -> None:
    extracted = extract_text(three_page_pdf)
    assert [number for number, _ in extracted.pages] == [1, 2, 3]
    assert [text.strip() for _, text in extracted.pages] == [
        "Alpha on the first page.", "Beta on the second page.", "Gamma on the third page."]
    assert extracted.title == "Quarterly report" and extracted.notes == ()


def test_a_blank_page_among_text_pages_is_a_note(tmp_path: Path) -> None:
    extracted = extract_text(write_pdf(tmp_path / "gaps.pdf", ["one", "", "three", ""]))
    assert [number for number, _ in extracted.pages] == [1, 3]
    assert extracted.title == "gaps.pdf" and extracted.notes == ("pages 2, 4 have no text layer",)


@pytest.mark.parametrize("algorithm", [None, "AES-256"])
def test_a_password_protected_pdf_is_encrypted(tmp_path: Path, three_page_pdf: Path, algorithm: str | None) -> None:
    path = encrypt_pdf(three_page_pdf, tmp_path / "secret.pdf", user_password="secret", algorithm=algorithm)
    error = _refused(path, EncryptedDocumentError)
    assert error.reason == "it is protected by a password" and isinstance(error, PermissionError)


def test_a_pdf_with_an_empty_user_password_opens(tmp_path: Path, three_page_pdf: Path) -> None:
    path = encrypt_pdf(three_page_pdf, tmp_path / "owner-only.pdf", user_password="", owner_password="owner")
    assert [text.strip() for _, text in extract_text(path).pages][0] == "Alpha on the first page."


@pytest.mark.parametrize("damage", ["first half", "header and garbage", "header only", "html named .pdf"])
def test_a_damaged_pdf_is_unreadable_and_nothing_else_escapes(tmp_path: Path, three_page_pdf: Path,
                                                               damage: str) -> None:
    data = three_page_pdf.read_bytes()
    broken = {"first half": data[:len(data) // 2],
              "header and garbage": b"%PDF-1.7\n" + random.Random(3).randbytes(20_000),
              "header only": b"%PDF-",
              "html named .pdf": b"<html><body>Not found</body></html>"}[damage]
    error = _refused(_write(tmp_path / "broken.pdf", broken))
    assert error.reason.startswith("it is a damaged PDF (")


def test_a_pdf_of_blank_pages_has_no_text_layer(tmp_path: Path) -> None:
    error = _refused(write_pdf(tmp_path / "scan.pdf", ["", "", ""]))
    assert error.reason == "it has no text layer (a scanned PDF needs OCR, which Hearth does not do)"


def test_a_pdf_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "atlas.pdf"
    with path.open("wb") as file:
        file.write(b"%PDF-1.7\n")
        file.truncate(MAX_FILE_BYTES + MiB)
    assert _refused(path).reason == "it is 257 MB, more than the 256 MB Hearth reads of a PDF file"


# ------------------------------------------------------------------ HTML


def test_html_drops_scripts_and_styles_and_keeps_blocks_as_lines(tmp_path: Path) -> None:
    page = """<!DOCTYPE html><html><head><title>  Release
      notes </title><style>body { color: red }</style><script>var hidden = "no";</script></head>
    <body><noscript>Enable JS</noscript><h1>Version 2</h1><p>Faster   start,
    fewer &amp; smaller <b>files</b>.</p><ul><li>one</li><li>two</li></ul>
    <table><tr><td>a</td><td>b</td></tr></table><pre>  indented
    code</pre><template><p>never shown</p></template></body></html>"""
    extracted = extract_text(_write(tmp_path / "notes.html", page.encode()))
    assert extracted.title == "Release notes"
    assert _text(extracted) == (
        "Version 2\n\nFaster start, fewer & smaller files.\n\none\ntwo\n\na\tb\n\n  indented\n    code")


def test_html_declaring_a_legacy_charset_is_read_in_it(tmp_path: Path) -> None:
    page = '<html><head><meta charset="iso-8859-1"><title>Menü</title></head><body><p>Prix : 5 €</p></body></html>'
    extracted = extract_text(_write(tmp_path / "menu.htm", page.encode("cp1252")))
    assert extracted.title == "Menü" and _text(extracted) == "Prix : 5 €"
    assert extracted.notes == ("it is not UTF-8; it was read as Windows-1252",)


# ----------------------------------------------------------------- .docx


def test_a_docx_gives_paragraphs_tabs_and_breaks(tmp_path: Path) -> None:
    body = ('<w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>'
            '<w:r><w:t>Name</w:t></w:r><w:r><w:tab/><w:t xml:space="preserve">Ada </w:t></w:r>'
            '<w:r><w:t>Lovelace</w:t></w:r></w:p>'
            '<w:p><w:r><w:t>First line</w:t><w:br/><w:t>second line</w:t></w:r></w:p>'
            '<w:p><w:del><w:r><w:delText>deleted</w:delText></w:r></w:del></w:p>')
    extracted = extract_text(write_docx(tmp_path / "letter.docx", document_xml(body), core=core_xml("A letter")))
    assert _text(extracted) == "Name\tAda Lovelace\nFirst line\nsecond line\n"
    assert extracted.title == "A letter"


def test_a_docx_without_core_properties_is_titled_by_its_name(tmp_path: Path) -> None:
    path = write_docx(tmp_path / "plain.docx", document_xml("<w:p><w:r><w:t>Hi</w:t></w:r></w:p>"))
    assert extract_text(path).title == "plain.docx"


def test_a_zip_named_docx_without_document_xml_is_damaged(tmp_path: Path) -> None:
    error = _refused(write_docx(tmp_path / "hollow.docx", None, extra={"readme.txt": b"hello"}))
    assert error.reason == "it is a damaged .docx file (it has no word/document.xml)"


def test_a_file_that_is_not_a_zip_named_docx_is_damaged(tmp_path: Path) -> None:
    assert _refused(_write(tmp_path / "fake.docx", b"just text")).reason.startswith("it is a damaged .docx file (")


def test_a_password_protected_docx_is_encrypted(tmp_path: Path) -> None:
    # Word keeps an encrypted .docx in an OLE container with an "EncryptedPackage" stream, not in a zip.
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1024) + "EncryptedPackage".encode("utf-16-le") + bytes(512)
    _refused(_write(tmp_path / "locked.docx", ole), EncryptedDocumentError)
    old = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(4096)
    assert "old-style Word file" in _refused(_write(tmp_path / "renamed.docx", old)).reason


@pytest.mark.timeout(10)
def test_a_docx_with_an_entity_bomb_is_refused_at_once(tmp_path: Path) -> None:
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
    document = document_xml("<w:p><w:r><w:t>&lol9;</w:t></w:r></w:p>", prolog=f"<!DOCTYPE w:document [{entities}]>")
    error = _refused(write_docx(tmp_path / "bomb.docx", document))
    assert error.reason == "it is a damaged .docx file (it declares XML entities, which Word never does)"


def test_a_docx_whose_text_unpacks_past_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "zip-bomb.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = b" " * MiB
            for _ in range(MAX_XML_BYTES // MiB + 1):
                member.write(block)
    assert path.stat().st_size < MiB
    assert _refused(path).reason.startswith("its word/document.xml would unpack to more than the 64 MB")


# ------------------------------------------------------- the file itself


def test_a_file_deleted_between_listing_and_reading_vanished(tmp_path: Path) -> None:
    for name in ("gone.txt", "gone.pdf", "gone.docx"):
        path = _write(tmp_path / name, b"soon gone")
        path.unlink()
        error = _refused(path, DocumentVanishedError)
        assert error.reason == "it was moved or deleted while Hearth read it" and isinstance(error, FileNotFoundError)


def test_a_folder_is_not_a_document(tmp_path: Path) -> None:
    (tmp_path / "chapter.md").mkdir()
    assert _refused(tmp_path / "chapter.md").reason == "it is a folder, not a file"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.timeout(10)
def test_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.txt")
    assert _refused(tmp_path / "pipe.txt").reason == "it is not a regular file (a device, pipe or socket)"


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root (and Windows ACLs) read anything")
def test_a_file_hearth_may_not_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "private.txt", b"secret")
    path.chmod(0)
    try:
        assert _refused(path).reason == "Hearth may not read it (permission denied)"
    finally:
        path.chmod(0o600)


# ------------------------------------------------------------ hostility

SUFFIXES = [".pdf", ".docx", ".html", ".txt", ""]
PREFIXES = [b"", b"%PDF-1.7\n", b"PK\x03\x04", b"<html><title>", b"\xef\xbb\xbf", b"\xff\xfe", b"\xd0\xcf\x11\xe0"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2048), suffix=st.sampled_from(SUFFIXES), prefix=st.sampled_from(PREFIXES))
def test_random_bytes_raise_nothing_but_document_errors(tmp_path: Path, data: bytes, suffix: str,
                                                        prefix: bytes) -> None:
    path = _write(tmp_path / f"random{suffix}", prefix + data)
    try:
        extracted = extract_text(path)
    except DocumentError:
        return
    assert isinstance(extracted, ExtractedText) and extracted.chars > 0


def _mutations(data: bytes, rng: random.Random, count: int):
    for _ in range(count):
        damaged = bytearray(data)
        how = rng.randrange(3)
        if how == 0:
            for _ in range(rng.randrange(1, 20)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        elif how == 1:
            del damaged[rng.randrange(len(damaged)):]
        else:
            at = rng.randrange(len(damaged))
            damaged[at:at + rng.randrange(200)] = rng.randbytes(rng.randrange(200))
        yield bytes(damaged)


def test_damaged_copies_of_real_pdfs_and_docx_files_raise_nothing_but_document_errors(
        tmp_path: Path, three_page_pdf: Path) -> None:
    docx = write_docx(tmp_path / "real.docx", document_xml("<w:p><w:r><w:t>Hello</w:t><w:tab/></w:r></w:p>" * 50),
                      core=core_xml("Real"))
    rng = random.Random(2026)
    outcomes = {"read": 0, "refused": 0}
    for original, suffix in ((three_page_pdf.read_bytes(), ".pdf"), (docx.read_bytes(), ".docx")):
        for number, damaged in enumerate(_mutations(original, rng, 150)):
            path = _write(tmp_path / f"damaged-{number}{suffix}", damaged)
            try:
                extract_text(path)
                outcomes["read"] += 1
            except DocumentError:
                outcomes["refused"] += 1
    assert outcomes["read"] and outcomes["refused"]
