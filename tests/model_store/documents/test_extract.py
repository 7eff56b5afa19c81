"""Text out of real files: every format Hearth reads, and a sentence (never a crash) for every bad one."""

from __future__ import annotations

import os
import random
import zipfile
from pathlib import Path

import pytest
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter

from model_store.documents.extract import MAX_TEXT_BYTES, extract_text, looks_like_document
from model_store.errors import (
    DocumentError,
    DocumentVanishedError,
    EncryptedDocumentError,
    UnreadableDocumentError,
)


def _pdf(path: Path, pages: list[str], *, title: str | None = None) -> Path:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    if title:
        pdf.set_title(title)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def _encrypted(source: Path, target: Path, user_password: str) -> Path:
    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password=user_password, owner_password="owner-secret")
    with target.open("wb") as file:
        writer.write(file)
    return target


def _docx(path: Path, document_xml: str, *, title: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types '
                         'xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>')
        archive.writestr("word/document.xml", document_xml)
        if title:
            archive.writestr("docProps/core.xml", '<?xml version="1.0"?><cp:coreProperties xmlns:cp="http://schemas.'
                             'openxmlformats.org/package/2006/metadata/core-properties" xmlns:dc="http://purl.org/dc/'
                             f'elements/1.1/"><dc:title>{title}</dc:title></cp:coreProperties>')
    return path


WORD = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
TWO_PARAGRAPHS = (f'<?xml version="1.0"?><w:document {WORD}><w:body>'
                  '<w:p><w:r><w:t>First paragraph</w:t><w:tab/><w:t>after a tab</w:t></w:r></w:p>'
                  '<w:p><w:r><w:t>Second</w:t><w:br/><w:t>line two</w:t></w:r></w:p></w:body></w:document>')


def test_text_markdown_and_code_read_as_they_are(tmp_path: Path) -> None:
    for name, text in (("notes.md", "# Title\n\nSome *Markdown*.\n"), ("tool.py", "def f():\n    return 'é'\n"),
                       ("Makefile", "all:\n\techo hi\n")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        extracted = extract_text(tmp_path / name)
        assert extracted.pages == ((None, text),) and extracted.title == name and extracted.notes == ()
    (tmp_path / "bom.txt").write_bytes("\ufeffwith a byte order mark\r\nand CRLF".encode("utf-8"))
    assert extract_text(tmp_path / "bom.txt").pages == ((None, "with a byte order mark\nand CRLF"),)
    (tmp_path / "wide.txt").write_bytes("UTF-16 text: naïve".encode("utf-16"))
    assert extract_text(tmp_path / "wide.txt").pages[0][1] == "UTF-16 text: naïve"


def test_text_that_is_not_utf8_is_read_and_says_how(tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes("Le café, la crème brûlée et les pâtés sont très bons.".encode("cp1252"))
    extracted = extract_text(tmp_path / "latin.txt")
    assert extracted.pages[0][1] == "Le café, la crème brûlée et les pâtés sont très bons."
    assert extracted.notes == ("it is not UTF-8; it was read as Windows-1252",)


def test_a_huge_log_is_read_only_as_far_as_is_kept(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    line = "2026-12-02 21:00:00 INFO request served in 12 ms — ok\n"
    with log.open("w", encoding="utf-8") as file:
        file.write(line * 400_000)  # ~22 MB of real lines
    extracted = extract_text(log, max_text_bytes=1_000_000)
    assert extracted.chars <= 1_000_000 and extracted.pages[0][1].startswith(line)
    assert extracted.notes == ("only its first 1 MB were read",)
    sparse = tmp_path / "huge.log"
    with sparse.open("wb") as file:
        file.write(line.encode() * 1000)
        file.truncate(500 * 1024 * 1024)  # 500 MB on paper; only what is kept is read
    extracted = extract_text(sparse)
    assert extracted.notes == (f"only its first {MAX_TEXT_BYTES // 2**20} MB were read",)
    assert extracted.pages[0][1].count("request served") == 1000


def test_binary_and_empty_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    cases = {"blob.dat": random.Random(1).randbytes(20_000),
             "program": b"\x7fELF\x02\x01\x01\x00" + bytes(1000), "empty.txt": b"", "blank.md": b"  \n\n \t\n"}
    reasons = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnreadableDocumentError) as caught:
            extract_text(tmp_path / name)
        reasons[name] = caught.value.reason
    assert reasons["blob.dat"] == reasons["program"] == "it is a binary file, not text"
    assert reasons["empty.txt"] == reasons["blank.md"] == "it is empty"
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(UnreadableDocumentError, match="not .png files"):
        extract_text(tmp_path / "photo.png")
    assert not looks_like_document(tmp_path / "photo.png") and not looks_like_document(Path("m.gguf"))
    assert looks_like_document(Path("notes.md")) and looks_like_document(Path("README"))


def test_a_pdf_gives_its_pages_and_title(tmp_path: Path) -> None:
    pdf = _pdf(tmp_path / "report.pdf", ["The first page talks about tides.", "",
                                         "The third page says the bridge opened in 1932."], title="Harbour report")
    extracted = extract_text(pdf)
    assert extracted.title == "Harbour report"
    assert [number for number, _ in extracted.pages] == [1, 3]  # the empty page has no passage
    assert "tides" in extracted.pages[0][1] and "1932" in extracted.pages[1][1]


def test_encrypted_pdfs(tmp_path: Path) -> None:
    plain = _pdf(tmp_path / "plain.pdf", ["Confidential numbers: 42."])
    with pytest.raises(EncryptedDocumentError) as caught:
        extract_text(_encrypted(plain, tmp_path / "locked.pdf", "secret"))
    assert caught.value.reason == "it is protected by a password"
    opened = extract_text(_encrypted(plain, tmp_path / "owner-only.pdf", ""))  # no password to open it
    assert "42" in opened.pages[0][1]


def test_broken_pdfs_are_a_reason_not_a_crash(tmp_path: Path) -> None:
    good = _pdf(tmp_path / "good.pdf", ["Some text on a page."] * 3).read_bytes()
    cases = {"half.pdf": good[: len(good) // 2], "garbage.pdf": b"%PDF-1.7\n" + os.urandom(5000),
             "not-a-pdf.pdf": b"hello, I am text in disguise"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UnreadableDocumentError) as caught:
            extract_text(tmp_path / name)
        assert caught.value.reason.startswith(("it is a damaged PDF", "it has no text layer"))
    blank = _pdf(tmp_path / "scan.pdf", ["", ""])
    with pytest.raises(UnreadableDocumentError, match="no text layer"):
        extract_text(blank)


def test_html_keeps_the_words_and_drops_the_code(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text("<html><head><title>The  Lighthouse</title><style>p{color:red}</style></head><body>"
                    "<script>alert('x')</script><h1>Keepers</h1><p>Ada &amp; Tom kept the light.</p>"
                    "<noscript>enable js</noscript><ul><li>one</li><li>two</li></ul></body></html>", encoding="utf-8")
    extracted = extract_text(page)
    text = extracted.pages[0][1]
    assert extracted.title == "The Lighthouse"
    assert "Ada & Tom kept the light." in text and "Keepers" in text and "one\n" in text
    assert "alert" not in text and "color" not in text and "enable js" not in text


def test_docx_paragraphs_tabs_and_breaks(tmp_path: Path) -> None:
    extracted = extract_text(_docx(tmp_path / "letter.docx", TWO_PARAGRAPHS, title="A letter"))
    assert extracted.pages == ((None, "First paragraph\tafter a tab\nSecond\nline two"),)
    assert extracted.title == "A letter"


def test_hostile_and_broken_docx_files(tmp_path: Path) -> None:
    bomb = (f'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            f'<w:document {WORD}><w:body><w:p><w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>')
    with pytest.raises(UnreadableDocumentError, match="declares XML entities"):
        extract_text(_docx(tmp_path / "bomb.docx", bomb))
    with zipfile.ZipFile(tmp_path / "hollow.docx", "w") as archive:
        archive.writestr("other.xml", "<x/>")
    with pytest.raises(UnreadableDocumentError, match="no document text"):
        extract_text(tmp_path / "hollow.docx")
    (tmp_path / "fake.docx").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UnreadableDocumentError, match="damaged .docx"):
        extract_text(tmp_path / "fake.docx")
    with pytest.raises(UnreadableDocumentError, match="damaged .docx"):
        extract_text(_docx(tmp_path / "bad-xml.docx", "<w:document><unclosed>"))


def test_a_vanished_file_a_folder_and_a_forbidden_file(tmp_path: Path) -> None:
    with pytest.raises(DocumentVanishedError, match="moved or deleted"):
        extract_text(tmp_path / "gone.txt")
    with pytest.raises(DocumentVanishedError):
        extract_text(tmp_path / "gone.pdf")
    (tmp_path / "folder.md").mkdir()
    with pytest.raises(UnreadableDocumentError, match="folder"):
        extract_text(tmp_path / "folder.md")
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    locked = tmp_path / "locked.txt"
    locked.write_text("private", encoding="utf-8")
    locked.chmod(0)
    with pytest.raises(UnreadableDocumentError, match="permission denied"):
        extract_text(locked)


@pytest.mark.parametrize("suffix", [".pdf", ".docx", ".html", ".txt", ".md", ""])
def test_random_bytes_never_raise_anything_but_a_document_error(tmp_path: Path, suffix: str) -> None:
    rng = random.Random(suffix)
    headers = {".pdf": b"%PDF-1.4\n", ".docx": b"PK\x03\x04", ".html": b"<html>"}
    for trial in range(25):
        path = tmp_path / f"file{trial}{suffix}"
        path.write_bytes(headers.get(suffix, b"") + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3000))))
        try:
            extract_text(path)
        except DocumentError:
            pass
