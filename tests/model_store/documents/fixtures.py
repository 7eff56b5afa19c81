"""Real documents for the extraction tests: PDFs written with fpdf2, .docx files zipped by hand."""

from __future__ import annotations

import zipfile
from pathlib import Path

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    "</Types>"
)


def write_pdf(path: Path, pages: list[str], *, title: str | None = None) -> Path:
    """A PDF with one page per entry; an empty entry is a blank page (no text layer)."""
    from fpdf import FPDF

    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 10, text)
    pdf.output(str(path))
    return path


def encrypt_pdf(source: Path, target: Path, *, user_password: str, owner_password: str | None = None,
                algorithm: str | None = None) -> Path:
    """``source`` re-written by pypdf with a password (RC4-128 unless ``algorithm`` says otherwise)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm=algorithm)
    with target.open("wb") as file:
        writer.write(file)
    return target


def document_xml(body: str, *, prolog: str = "") -> str:
    """A ``word/document.xml`` around ``body`` (its ``w:p`` elements); ``prolog`` goes before the root."""
    return (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>{prolog}'
            f'<w:document xmlns:w="{W_NS}"><w:body>{body}</w:body></w:document>')


def core_xml(title: str) -> str:
    """A ``docProps/core.xml`` with a ``dc:title``."""
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
            f'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{title}</dc:title></cp:coreProperties>')


def write_docx(path: Path, document: str | bytes | None, *, core: str | None = None,
               extra: dict[str, bytes] | None = None) -> Path:
    """A minimal .docx: content types, ``word/document.xml`` (left out when None), optional core properties."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", CONTENT_TYPES)
        if document is not None:
            archive.writestr("word/document.xml", document)
        if core is not None:
            archive.writestr("docProps/core.xml", core)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return path
