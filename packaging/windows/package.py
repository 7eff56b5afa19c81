"""Windows installer: Inno Setup 6 compiles ``hearth.iss`` around the PyInstaller folder.

``package_windows`` is called by ``packaging/build.py`` on Windows after
PyInstaller made ``dist/hearth``. The command line is built by a pure function
so that it can be checked on any system; only running it needs Windows.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

ISS = Path(__file__).resolve().parent / "hearth.iss"
INNO_SETUP_HELP = "install Inno Setup 6 (https://jrsoftware.org/isdl.php, or `choco install innosetup -y`)"


class InnoSetupNotFound(FileNotFoundError):
    """ISCC.exe, Inno Setup's compiler, is neither on PATH nor in its usual folders."""


def installer_name(version: str) -> str:
    """File name of the installer for ``version``; the .iss's OutputBaseFilename must agree."""
    return f"Hearth-{version}-windows-x64-setup.exe"


def numeric_version(version: str) -> str:
    """The leading ``1.2.3`` of a version such as ``1.2.3rc1`` (Windows' file version takes numbers only)."""
    match = re.match(r"\d+(\.\d+){0,3}", version)
    return match.group(0) if match else "0.0.0"


def iscc_candidates(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Where ISCC.exe is installed by default: for all users (also Chocolatey's) or for one user."""
    environ = os.environ if environ is None else environ
    folders = [environ.get("ProgramFiles(x86)", r"C:\Program Files (x86)"), environ.get("ProgramFiles", r"C:\Program Files")]
    if environ.get("LOCALAPPDATA"):
        folders.append(str(Path(environ["LOCALAPPDATA"]) / "Programs"))
    return [Path(folder) / "Inno Setup 6" / "ISCC.exe" for folder in folders]


def find_iscc(search_path: str | None = None, candidates: Iterable[Path] | None = None) -> Path:
    """Inno Setup's compiler: ``iscc`` on ``search_path`` (default PATH), else the first existing candidate.

    Raises:
        InnoSetupNotFound: it is in none of those places.
    """
    found = shutil.which("iscc", path=search_path)
    if found:
        return Path(found)
    candidates = iscc_candidates() if candidates is None else list(candidates)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(candidate) for candidate in candidates)
    raise InnoSetupNotFound(f"Inno Setup's ISCC.exe is not on PATH nor in {looked}: {INNO_SETUP_HELP}")


def iscc_command(iscc: Path, *, version: str, bundle_dir: Path, dist: Path, icon: Path | None) -> list[str]:
    """The ISCC command line that writes ``dist/<installer_name(version)>`` from ``bundle_dir``.

    Paths are made absolute: ISCC reads relative ones from the script's folder.
    """
    command = [
        str(iscc),
        "/Qp",  # quiet except for progress and errors
        f"/DAppVersion={version}",
        f"/DNumericVersion={numeric_version(version)}",
        f"/DSourceDir={Path(bundle_dir).resolve()}",
        f"/DOutputDir={Path(dist).resolve()}",
    ]
    if icon is not None:
        command.append(f"/DIconFile={Path(icon).resolve()}")
    return [*command, str(ISS)]


def package_windows(bundle_dir: Path, version: str, dist: Path, *, icon: Path | None = None) -> list[Path]:
    """Build ``dist/Hearth-<version>-windows-x64-setup.exe`` from the PyInstaller folder; return [its path].

    Args:
        bundle_dir: PyInstaller's one-folder bundle, holding ``hearth.exe``.
        version: the app version shown by the installer and in its file name.
        dist: where the installer is written.
        icon: the ``.ico`` of Setup itself (``build.py`` writes it with
            ``icon_formats.write_ico``); without one Setup has Inno's icon.
            The shortcuts show the icon inside ``hearth.exe`` either way.

    Raises:
        InnoSetupNotFound: Inno Setup 6 is not installed.
        FileNotFoundError: ``bundle_dir`` has no ``hearth.exe``.
        subprocess.CalledProcessError: ISCC failed (its messages are on the console).
    """
    iscc = find_iscc()
    if not (Path(bundle_dir) / "hearth.exe").is_file():
        raise FileNotFoundError(f"no hearth.exe in {bundle_dir}: run PyInstaller first")
    subprocess.run(iscc_command(iscc, version=version, bundle_dir=bundle_dir, dist=dist, icon=icon), check=True)
    installer = Path(dist) / installer_name(version)
    if not installer.is_file():
        raise FileNotFoundError(f"ISCC finished but {installer} is not there: does hearth.iss's OutputBaseFilename match?")
    return [installer]
