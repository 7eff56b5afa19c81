#!/usr/bin/env python3
"""Build Hearth's installers for this platform with one command.

    python3 packaging/build.py [--skip-bundle]

1. makes sure ``.venv`` is installed and current (``bootstrap.py``'s own steps)
   and adds the build tools from ``packaging/requirements-build.txt``;
2. freezes the app with PyInstaller (``packaging/hearth.spec``) into the
   one-folder bundle ``dist/hearth/``, and checks that no GPU engine
   (torch, transformers, accelerate, NVIDIA libraries) got into it;
3. makes this platform's installers in ``dist/``: on Linux
   ``hearth-<version>-linux-x86_64.tar.gz`` and ``hearth_<version>_amd64.deb``
   (``packaging/linux/package.py``); on Windows and macOS the recipes in
   ``packaging/windows/package.py`` and ``packaging/macos/package.py``.

Uses only the standard library at the top: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bootstrap  # noqa: E402  (the sibling script: one way to create .venv)

REPO = bootstrap.REPO
DIST = REPO / "dist"
WORK = REPO / "build" / "pyinstaller"
SPEC = HERE / "hearth.spec"
BUILD_REQUIREMENTS = HERE / "requirements-build.txt"
BUNDLE_NAME = "hearth"
ICON_WORK = REPO / "build" / "icons"
ICON_PNG_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512, 1024)
# Names that must never be in the CPU bundle: the optional GPU engine stays out of it.
FORBIDDEN_IN_BUNDLE = ("torch", "transformers", "accelerate", "nvidia", "libcuda", "libcudnn", "libcublas")


def main() -> int:
    parser = argparse.ArgumentParser(description="Build Hearth's installers for this platform.")
    parser.add_argument("--skip-bundle", action="store_true",
                        help="reuse dist/hearth from the last build; only make the installers again")
    parser.add_argument("--no-update", action="store_true",
                        help="freeze .venv as it is, even if bootstrap.py would update it (only the build tools are added)")
    args = parser.parse_args()

    started = time.monotonic()
    python = ensure_build_environment(update=not args.no_update)
    version = project_version()
    bundle = DIST / BUNDLE_NAME
    icons = render_icons(python)
    if not args.skip_bundle or not bundle.is_dir():
        build_bundle(python, icon=icons.get("program"))
    check_bundle(bundle)
    bootstrap.say(f"Bundle {bundle.relative_to(REPO)}: {folder_size(bundle) / 1e6:.0f} MB. Making installers ...")
    made = package(bundle, version, DIST, python=python, icons=icons)
    for path in made:
        bootstrap.say(f"Made {path.relative_to(REPO)} ({path.stat().st_size / 1e6:.0f} MB).")
    bootstrap.say(f"Done in {time.monotonic() - started:.0f} s.")
    return 0


def ensure_build_environment(*, update: bool = True) -> Path:
    """``.venv`` as ``bootstrap.py install`` makes it, plus the build tools; returns its Python."""
    if update:
        # The installers ship the CPU engine only (no GPU toolkit on the user's machine to match a GPU build).
        python = bootstrap.ensure_environment(with_tests=False, gpu_backend="cpu")
    else:
        python = bootstrap.venv_python()
        if not python.exists():
            raise SystemExit("There is no .venv yet: run without --no-update (or python3 packaging/bootstrap.py install).")
    wanted = hashlib.sha256(BUILD_REQUIREMENTS.read_bytes()).hexdigest()
    stamp = bootstrap.read_stamp()
    if stamp.get("build") != wanted:
        bootstrap.say("Installing the build tools (PyInstaller) ...")
        bootstrap.pip(python, "install", "-r", str(BUILD_REQUIREMENTS))
        bootstrap.STAMP.write_text(json.dumps({**stamp, "build": wanted}), encoding="utf-8")
    return python


def project_version() -> str:
    """``[project] version`` from pyproject.toml (read by hand: tomllib is Python 3.11+)."""
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL)
    match = re.search(r'^version\s*=\s*"([^"]+)"', project.group(1) if project else "", re.MULTILINE)
    if match is None:
        raise SystemExit("pyproject.toml has no [project] version.")
    return match.group(1)


def render_icons(python: Path) -> dict[str, Path]:
    """PNGs of ``packaging/icons/hearth.svg`` in ``build/icons``, and this platform's icon file.

    Returns ``{"png_dir": ...}`` plus, on Windows and macOS, ``"program"``: the
    ``.ico`` or ``.icns`` that PyInstaller puts into the program.
    """
    out = ICON_WORK
    command = [str(python), str(HERE / "render_icons.py"), str(out), *map(str, ICON_PNG_SIZES)]
    if subprocess.run(command, cwd=REPO, env=dict(os.environ, QT_QPA_PLATFORM="offscreen"),
                      stdout=subprocess.DEVNULL).returncode != 0:
        raise SystemExit("Rendering the icon failed; its messages are above.")
    icons = {"png_dir": out}
    if sys.platform in ("win32", "darwin"):
        import icon_formats  # packaging/icon_formats.py (stdlib only)

        pngs = {size: out / f"{size}x{size}" / "apps" / "hearth.png" for size in icon_formats.REQUIRED_SIZES}
        if sys.platform == "win32":
            icons["program"] = icon_formats.write_ico(pngs, out / "hearth.ico")
        else:
            icons["program"] = icon_formats.write_icns(pngs, out / "hearth.icns")
    return icons


def build_bundle(python: Path, *, icon: Path | None = None) -> None:
    """Run PyInstaller on the spec: ``dist/hearth/`` (and ``dist/Hearth.app`` on macOS)."""
    bootstrap.say("Freezing Hearth with PyInstaller (a few minutes) ...")
    command = [str(python), "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
               "--distpath", str(DIST), "--workpath", str(WORK), str(SPEC)]
    env = dict(os.environ, **({"HEARTH_PROGRAM_ICON": str(icon)} if icon else {}))
    if subprocess.run(command, cwd=REPO, env=env).returncode != 0:
        raise SystemExit("PyInstaller failed; its messages are above.")


def check_bundle(bundle: Path) -> None:
    """Stop when the bundle lacks its program or contains any part of the GPU engine."""
    program = bundle / (f"{BUNDLE_NAME}.exe" if sys.platform == "win32" else BUNDLE_NAME)
    if not program.is_file():
        raise SystemExit(f"{program} is missing: build without --skip-bundle.")
    found = sorted({
        str(path.relative_to(bundle)) for path in bundle.rglob("*")
        if any(path.name.lower().startswith(name) for name in FORBIDDEN_IN_BUNDLE)
    })
    if found:
        raise SystemExit(f"The CPU bundle must not contain the GPU engine, but has: {', '.join(found[:10])}")


def package(bundle: Path, version: str, dist: Path, *, python: Path, icons: dict[str, Path]) -> list[Path]:
    """This platform's installers; each recipe is loaded only on its own platform."""
    if sys.platform.startswith("linux"):
        return load_recipe("linux").package_linux(bundle, version, dist, python=python)
    if sys.platform == "win32":
        return load_recipe("windows").package_windows(bundle, version, dist, icon=icons.get("program"))
    if sys.platform == "darwin":
        return load_recipe("macos").package_macos(dist / "Hearth.app", version, dist)
    raise SystemExit(f"No installer recipe for {sys.platform} yet; the bundle is in {bundle}.")


def load_recipe(platform_dir: str):
    """Import ``packaging/<platform_dir>/package.py`` by path (``packaging`` is also a PyPI package's name)."""
    path = HERE / platform_dir / "package.py"
    if not path.is_file():
        raise SystemExit(f"{path.relative_to(REPO)} does not exist yet; the bundle is in dist/{BUNDLE_NAME}.")
    spec = importlib.util.spec_from_file_location(f"hearth_packaging_{platform_dir}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def folder_size(folder: Path) -> int:
    """Bytes in the regular files below ``folder`` (links not counted twice)."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


if __name__ == "__main__":
    sys.exit(main())
