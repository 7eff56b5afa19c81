"""macOS disk image: sign ``Hearth.app``, then put it in a ``.dmg`` next to a link to /Applications.

``package_macos`` is called by ``packaging/build.py`` on macOS after
PyInstaller made ``dist/Hearth.app``. Command lines are built by pure functions
so that they can be checked on any system; only running them needs macOS.

Signing: by default the app is signed ad hoc (``codesign -s -``), which Apple
silicon requires before it runs any code; such an app opens on the machine
that built it, and elsewhere only after the user allows it (right-click ›
Open, or System Settings › Privacy & Security), because Gatekeeper wants a
Developer ID signature and Apple's notarization. With a Developer ID the same
function does both, when these are set (nothing happens when they are not):

``HEARTH_CODESIGN_IDENTITY``
    a signing identity in the keychain, e.g. ``Developer ID Application: Name (TEAMID)``;
    the app is then signed with the hardened runtime and a secure timestamp,
    and the disk image is signed too.
``HEARTH_NOTARY_PROFILE``
    a ``xcrun notarytool store-credentials`` profile name: the disk image is
    submitted for notarization, waited for, and the ticket stapled to it.
``HEARTH_CODESIGN_ENTITLEMENTS``
    optional: an entitlements plist for the hardened runtime, should it block
    something the app does (nothing has needed one so far; untested).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

AD_HOC = "-"
# hdiutil create fails now and then with "Resource busy" on CI runners (actions/runner-images#7522); a retry passes.
HDIUTIL_TRIES = 4


def dmg_name(version: str) -> str:
    """File name of the disk image for ``version``."""
    return f"Hearth-{version}-macos-arm64.dmg"


def signing_identity(environ: Mapping[str, str] | None = None) -> str:
    """``HEARTH_CODESIGN_IDENTITY`` when set, else ad hoc (``-``)."""
    environ = os.environ if environ is None else environ
    return environ.get("HEARTH_CODESIGN_IDENTITY", "").strip() or AD_HOC


def codesign_app_command(app_dir: Path, identity: str, entitlements: str = "") -> list[str]:
    """Sign the app and everything inside it; with a real identity, the way notarization requires."""
    command = ["codesign", "--force", "--deep"]
    if identity != AD_HOC:
        command += ["--options", "runtime", "--timestamp"]
        if entitlements:
            command += ["--entitlements", entitlements]
    return [*command, "-s", identity, str(app_dir)]


def hdiutil_command(staging: Path, dmg: Path) -> list[str]:
    """Make a compressed read-only disk image named Hearth from the staging folder."""
    return ["hdiutil", "create", "-volname", "Hearth", "-srcfolder", str(staging), "-ov", "-format", "UDZO", str(dmg)]


def packaging_commands(app_dir: Path, dmg: Path, staging: Path, environ: Mapping[str, str] | None = None) -> list[list[str]]:
    """Every command ``package_macos`` runs, in order, for an empty ``staging`` folder.

    Signs the app in place (so the app in dist/ is the one in the disk image),
    checks the signature, copies the app with ``ditto`` (keeps links, modes and
    the signature), adds the /Applications link, makes the image; then, only
    when the environment asks for it, signs the image and notarizes it.
    """
    environ = os.environ if environ is None else environ
    identity = signing_identity(environ)
    notary_profile = environ.get("HEARTH_NOTARY_PROFILE", "").strip()
    app_dir = Path(app_dir)
    commands = [
        codesign_app_command(app_dir, identity, environ.get("HEARTH_CODESIGN_ENTITLEMENTS", "").strip()),
        ["codesign", "--verify", "--deep", "--strict", str(app_dir)],
        ["ditto", str(app_dir), str(Path(staging) / app_dir.name)],
        ["ln", "-s", "/Applications", str(Path(staging) / "Applications")],
        hdiutil_command(staging, dmg),
    ]
    if identity != AD_HOC:
        commands.append(["codesign", "--force", "--timestamp", "-s", identity, str(dmg)])
    if notary_profile:
        commands.append(["xcrun", "notarytool", "submit", str(dmg), "--keychain-profile", notary_profile, "--wait"])
        commands.append(["xcrun", "stapler", "staple", str(dmg)])
    return commands


def package_macos(app_dir: Path, version: str, dist: Path) -> list[Path]:
    """Sign ``app_dir`` in place and build ``dist/Hearth-<version>-macos-arm64.dmg`` from it; return [its path].

    Args:
        app_dir: PyInstaller's ``dist/Hearth.app`` (not the ``dist/hearth`` folder it was made from).
        version: the app version, in the file name.
        dist: where the disk image is written.

    Raises:
        FileNotFoundError: ``app_dir`` is not an app bundle, or a macOS tool is missing (not macOS).
        subprocess.CalledProcessError: codesign, ditto, hdiutil or notarytool failed.
    """
    app_dir, dist = Path(app_dir), Path(dist)
    if not (app_dir / "Contents" / "Info.plist").is_file():
        raise FileNotFoundError(f"{app_dir} is not an app bundle (no Contents/Info.plist): "
                                "pass dist/Hearth.app, which hearth.spec's BUNDLE makes on macOS")
    for tool in ("codesign", "ditto", "hdiutil"):
        if shutil.which(tool) is None:
            raise FileNotFoundError(f"{tool} not found: the disk image is made on macOS")
    staging = dist / "dmg-staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    dmg = dist / dmg_name(version)
    for command in packaging_commands(app_dir, dmg, staging):
        run_with_retries(command, tries=HDIUTIL_TRIES if command[0] == "hdiutil" else 1)
    shutil.rmtree(staging)
    return [dmg]


def run_with_retries(command: list[str], *, tries: int, pause_s: float = 5.0) -> None:
    """Run ``command``; run it again after a pause when it fails, up to ``tries`` times in all.

    Raises:
        subprocess.CalledProcessError: the last try failed.
    """
    for attempt in range(1, tries + 1):
        result = subprocess.run(command)
        if result.returncode == 0:
            return
        if attempt < tries:
            print(f"[hearth] {command[0]} failed (exit {result.returncode}), try {attempt + 1} of {tries} ...", flush=True)
            time.sleep(pause_s)
    raise subprocess.CalledProcessError(result.returncode, command)
