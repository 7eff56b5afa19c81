"""Render Hearth's SVG icon to the PNG sizes of the hicolor icon theme.

    .venv/bin/python packaging/render_icons.py OUT_DIR [SIZE ...]

Writes ``OUT_DIR/<size>x<size>/apps/<name>.png`` for each size (default: 16 to
512) and ``OUT_DIR/scalable/apps/<name>.svg``. Uses Qt's SVG renderer from the
app's own environment, so the build needs no image tool.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ICON = Path(__file__).resolve().parent / "icons" / "hearth.svg"
SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def render(svg: Path, out_dir: Path, name: str, sizes: tuple[int, ...]) -> list[Path]:
    """Render ``svg`` at each size into a hicolor-style tree; returns the files written.

    Raises:
        ValueError: Qt cannot read the SVG.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication([])  # noqa: F841 (QPainter needs one)
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"Qt cannot read the icon {svg}")
    written = []
    for size in sizes:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        target = out_dir / f"{size}x{size}" / "apps" / f"{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(target), "PNG"):
            raise ValueError(f"could not write {target}")
        written.append(target)
    scalable = out_dir / "scalable" / "apps" / f"{name}.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(svg, scalable)
    return [*written, scalable]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--name", default="hearth", help="icon file name without extension")
    args = parser.parse_args()
    for path in render(ICON, args.out_dir, args.name, tuple(args.sizes)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
