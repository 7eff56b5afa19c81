"""Windows ``.ico`` and macOS ``.icns`` app icons from PNGs rendered at build time.

``packaging/build.py`` renders ``icons/hearth.svg`` with ``render_icons.py``
(Hearth's own Qt), then ``write_ico`` (runs anywhere) or ``write_icns``
(needs macOS's ``iconutil``) packs the PNGs. Both take ``pngs``, a mapping
from pixel size to a square PNG of that size (``REQUIRED_SIZES`` lists the
sizes the two formats use). Standard library only.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Mapping
from pathlib import Path

# Sizes Windows picks from: small icons, Explorer views, the Start menu and the taskbar at 100-200 % scaling.
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# What iconutil expects in an .iconset folder: file name -> pixel size.
ICONSET_FILES = {
    "icon_16x16.png": 16,
    "icon_16x16@2x.png": 32,
    "icon_32x32.png": 32,
    "icon_32x32@2x.png": 64,
    "icon_128x128.png": 128,
    "icon_128x128@2x.png": 256,
    "icon_256x256.png": 256,
    "icon_256x256@2x.png": 512,
    "icon_512x512.png": 512,
    "icon_512x512@2x.png": 1024,
}
REQUIRED_SIZES = tuple(sorted({*ICO_SIZES, *ICONSET_FILES.values()}))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class IconError(ValueError):
    """A PNG is missing, is not a PNG, or does not have the size it is listed under."""


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header.

    Raises:
        IconError: the file is not a PNG.
    """
    header = Path(path).read_bytes()[:24]
    if len(header) < 24 or not header.startswith(PNG_SIGNATURE) or header[12:16] != b"IHDR":
        raise IconError(f"{path} is not a PNG file")
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def checked_png(pngs: Mapping[int, Path], size: int) -> Path:
    """The PNG listed for ``size``, after checking that it is a ``size`` x ``size`` PNG.

    Raises:
        IconError: there is none, or it has another size.
    """
    if size not in pngs:
        raise IconError(f"no {size}x{size} PNG of the icon (given: {sorted(pngs)})")
    actual = png_size(pngs[size])
    if actual != (size, size):
        raise IconError(f"{pngs[size]} is {actual[0]}x{actual[1]}, listed as {size}x{size}")
    return Path(pngs[size])


def write_ico(pngs: Mapping[int, Path], target: Path) -> Path:
    """Write a multi-size ``.ico`` holding each of ``ICO_SIZES`` as a PNG image; return ``target``.

    PNG-compressed entries are what Pillow writes too and what Windows has
    read at every size since Vista; the format is a 6-byte header, one 16-byte
    directory entry per image (a width of 0 means 256), then the images.

    Raises:
        IconError: a size is missing or a file is not a PNG of its size.
    """
    images = [checked_png(pngs, size).read_bytes() for size in ICO_SIZES]
    offset = 6 + 16 * len(images)
    directory = b""
    for size, data in zip(ICO_SIZES, images):
        side = size % 256  # 256 is written as 0
        directory += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(data), offset)
        offset += len(data)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(struct.pack("<HHH", 0, 1, len(images)) + directory + b"".join(images))
    return target


def write_iconset(pngs: Mapping[int, Path], folder: Path) -> Path:
    """Fill ``folder`` (a fresh ``*.iconset``) with the files iconutil expects; return it.

    Raises:
        IconError: a size is missing or a file is not a PNG of its size.
    """
    folder = Path(folder)
    if folder.suffix != ".iconset":
        raise IconError(f"iconutil reads only folders named *.iconset, not {folder.name}")
    sources = {name: checked_png(pngs, size) for name, size in ICONSET_FILES.items()}
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, source in sources.items():
        shutil.copyfile(source, folder / name)
    return folder


def iconutil_command(iconset: Path, target: Path) -> list[str]:
    """The iconutil command line that turns an ``.iconset`` folder into ``target`` (``.icns``)."""
    return ["iconutil", "-c", "icns", "-o", str(target), str(iconset)]


def write_icns(pngs: Mapping[int, Path], target: Path) -> Path:
    """Write a macOS ``.icns`` with iconutil (macOS only), through an ``.iconset`` next to it; return ``target``.

    Raises:
        IconError: a size is missing or a file is not a PNG of its size.
        FileNotFoundError: iconutil is not installed (not macOS).
        subprocess.CalledProcessError: iconutil failed.
    """
    if shutil.which("iconutil") is None:
        raise FileNotFoundError("iconutil not found: .icns files are made on macOS (it comes with the OS)")
    target = Path(target)
    iconset = write_iconset(pngs, target.with_suffix(".iconset"))
    subprocess.run(iconutil_command(iconset, target), check=True)
    shutil.rmtree(iconset)
    return target
