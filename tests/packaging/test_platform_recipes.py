"""The Windows and macOS installer recipes and the CI workflow that runs them, checked on any system.

Inno Setup, codesign, hdiutil and iconutil exist only on Windows and macOS:
here the tests read the recipes, build the command lines with the same pure
functions the build uses, and run what runs anywhere (the .ico writer, the
"Inno Setup is missing" path, the retry loop). The installers themselves are
built and smoke-tested by .github/workflows/installers.yml on Windows and
macOS runners.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import inspect
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "installers.yml"
ISS = REPO / "packaging" / "windows" / "hearth.iss"
# Never to change: Windows finds, upgrades and uninstalls an installed Hearth by this id.
APP_ID = "{{78EF02D5-616A-4541-86D0-7A5AED0FD48E}"


def load(relative: str) -> ModuleType:
    """Import a packaging script by path (packaging/ is a folder of scripts, not a package)."""
    name = "recipe_" + re.sub(r"\W", "_", relative)
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


windows = load("packaging/windows/package.py")
macos = load("packaging/macos/package.py")
icons = load("packaging/icon_formats.py")


def write_png(path: Path, width: int, height: int | None = None) -> Path:
    """A real RGBA PNG of one colour, written with zlib (no image library needed)."""
    height = width if height is None else height

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xe0\x60\x20\xff" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


@pytest.fixture
def pngs(tmp_path: Path) -> dict[int, Path]:
    """One PNG per size the two icon formats use."""
    folder = tmp_path / "png"
    folder.mkdir()
    return {size: write_png(folder / f"{size}.png", size) for size in icons.REQUIRED_SIZES}


# --- the workflow ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: the workflow file is not parsed")
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def steps_running(job: dict, text: str) -> list[dict]:
    return [step for step in job["steps"] if text in step.get("run", "")]


def test_workflow_runs_on_version_tags_and_by_hand(workflow: dict) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert triggers["push"]["tags"] == ["v*"]
    assert "workflow_dispatch" in triggers


def test_every_system_runs_the_same_build_command(workflow: dict) -> None:
    build = workflow["jobs"]["build"]
    assert sorted(entry["os"] for entry in build["strategy"]["matrix"]["include"]) == [
        "macos-14", "ubuntu-22.04", "windows-latest"]
    [step] = steps_running(build, "packaging/build.py")
    assert step["run"].strip() == "python packaging/build.py"
    assert "if" not in step


def test_every_script_the_workflow_runs_exists(workflow: dict) -> None:
    runs = " ".join(step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"])
    scripts = set(re.findall(r"packaging/[\w/]+\.py", runs))
    assert scripts == {"packaging/build.py", "packaging/smoke_test.py"}
    assert all((REPO / script).is_file() for script in scripts), scripts


def test_every_system_smoke_tests_its_bundle(workflow: dict) -> None:
    build = workflow["jobs"]["build"]
    apps = {entry["os"]: entry["app"] for entry in build["strategy"]["matrix"]["include"]}
    assert apps == {
        "ubuntu-22.04": "dist/hearth/hearth",
        "windows-latest": "dist/hearth/hearth.exe",
        "macos-14": "dist/Hearth.app/Contents/MacOS/hearth",
    }
    [step] = steps_running(build, "${{ matrix.app }}")
    assert step["run"] == '"${{ matrix.app }}" --self-test' and "if" not in step


def test_installer_checks_run_what_the_recipes_make(workflow: dict) -> None:
    build = workflow["jobs"]["build"]
    [windows_step] = steps_running(build, "unins000.exe")
    installer_glob = windows_step["run"].split()[0]
    assert fnmatch.fnmatch("dist/" + windows.installer_name("1.2.3"), installer_glob)
    assert "/CURRENTUSER" in windows_step["run"] and "Start Menu/Programs/Hearth.lnk" in windows_step["run"]
    [macos_step] = steps_running(build, "hdiutil attach")
    dmg_glob = macos_step["run"].split("\n")[0].split()[-1]
    assert fnmatch.fnmatch("dist/" + macos.dmg_name("1.2.3"), dmg_glob)


def test_llama_wheel_cache_follows_bootstrap_and_the_runner(workflow: dict) -> None:
    build = workflow["jobs"]["build"]
    [cache] = [step for step in build["steps"] if step.get("uses", "").startswith("actions/cache@")]
    assert build["env"]["HEARTH_WHEEL_CACHE"] == "${{ github.workspace }}/" + cache["with"]["path"]
    for part in ("runner.os", "runner.arch", "hashFiles('packaging/bootstrap.py')"):
        assert part in cache["with"]["key"]
    bootstrap = (REPO / "packaging" / "bootstrap.py").read_text(encoding="utf-8")
    assert 'os.environ.get("HEARTH_WHEEL_CACHE")' in bootstrap


def test_artefacts_are_uploaded_and_released_on_tags(workflow: dict) -> None:
    build = workflow["jobs"]["build"]
    [upload] = [step for step in build["steps"] if step.get("uses", "").startswith("actions/upload-artifact@")
                and step["with"]["name"].startswith("hearth-")]
    patterns = upload["with"]["path"].split()
    for made in (windows.installer_name("0.1.0"), macos.dmg_name("0.1.0"),
                 "hearth-0.1.0-linux-x86_64.tar.gz", "hearth_0.1.0_amd64.deb"):
        assert any(fnmatch.fnmatch("dist/" + made, pattern) for pattern in patterns), made
    release = workflow["jobs"]["release"]
    assert release["needs"] == "build"
    assert release["if"] == "startsWith(github.ref, 'refs/tags/v')"
    [download] = [step for step in release["steps"] if step.get("uses", "").startswith("actions/download-artifact@")]
    assert download["with"]["pattern"] == "hearth-*" == upload["with"]["name"].replace("${{ runner.os }}", "*")
    assert release["permissions"] == {"contents": "write"}
    assert workflow["permissions"] == {"contents": "read"}
    assert "gh release create" in release["steps"][-1]["run"]


# --- the calls build.py makes ----------------------------------------------------------------------


@pytest.mark.parametrize("recipe", ["package_windows", "package_macos"])
def test_build_py_calls_the_recipes_as_they_are_declared(recipe: str) -> None:
    tree = ast.parse((REPO / "packaging" / "build.py").read_text(encoding="utf-8"))
    calls = [node for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == recipe]
    assert calls, f"build.py does not call {recipe}"
    function = getattr({"package_windows": windows, "package_macos": macos}[recipe], recipe)
    for call in calls:
        placeholders = [object()] * len(call.args)
        inspect.signature(function).bind(*placeholders, **{keyword.arg: object() for keyword in call.keywords})


# --- Windows: the Inno Setup script and package_windows --------------------------------------------


def iss_setup() -> dict[str, str]:
    """The [Setup] section of hearth.iss as directive -> value (preprocessor lines left out)."""
    setup, section = {}, None
    for line in ISS.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Setup]" and "=" in line and not line.startswith((";", "#")):
            key, value = line.split("=", 1)
            setup[key.strip()] = value.strip()
    return setup


def test_iss_has_a_fixed_app_id_and_installs_per_user_without_admin() -> None:
    setup = iss_setup()
    assert setup["AppId"] == APP_ID
    assert setup["PrivilegesRequired"] == "lowest"
    assert setup["PrivilegesRequiredOverridesAllowed"] == "dialog"
    assert setup["DefaultDirName"] == r"{autopf}\Hearth"  # LocalAppData\Programs per user, Program Files for all
    assert setup["ArchitecturesAllowed"] == setup["ArchitecturesInstallIn64BitMode"] == "x64compatible"
    assert setup["Compression"].startswith("lzma2")
    assert setup["AppVersion"] == "{#AppVersion}"


def test_iss_output_name_is_the_one_package_windows_returns() -> None:
    base = iss_setup()["OutputBaseFilename"].replace("{#AppVersion}", "0.1.0")
    assert base + ".exe" == windows.installer_name("0.1.0")


def test_iss_shortcuts_and_an_uninstaller_that_keeps_user_data() -> None:
    text = ISS.read_text(encoding="utf-8")
    assert 'Name: "{autoprograms}\\Hearth"; Filename: "{app}\\hearth.exe"' in text
    assert 'Tasks: desktopicon' in text and re.search(r'Name: "desktopicon".*Flags: unchecked', text)
    # Uninstall removes what Setup logged and nothing else: no [UninstallDelete], no user folders named.
    assert "[UninstallDelete]" not in text
    for user_folder in ("{localappdata}", "{userappdata}", "{app}\\..", "{%"):
        assert user_folder not in text
    # The only thing deleted on purpose is the previous version's bundle, inside {app}.
    [(kind, name)] = re.findall(r'^Type: (\w+); Name: "([^"]+)"', text, flags=re.MULTILINE)
    assert kind == "filesandordirs" and name.startswith("{app}\\")


def test_package_windows_without_inno_setup_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "dist" / "hearth"
    bundle.mkdir(parents=True)
    (bundle / "hearth.exe").write_bytes(b"MZ")
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "LocalAppData"))
    monkeypatch.chdir(tmp_path)  # the default C:\... candidates are relative paths here
    with pytest.raises(windows.InnoSetupNotFound, match=r"Inno Setup.*ISCC\.exe.*choco install innosetup") as raised:
        windows.package_windows(bundle, "0.1.0", tmp_path / "dist")
    assert isinstance(raised.value, FileNotFoundError)
    assert str(tmp_path / "LocalAppData" / "Programs" / "Inno Setup 6" / "ISCC.exe") in str(raised.value)
    assert not list((tmp_path / "dist").glob("*.exe"))


def test_find_iscc_takes_path_first_then_the_install_folders(tmp_path: Path) -> None:
    on_path = tmp_path / "bin" / "iscc"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    installed = tmp_path / "Inno Setup 6" / "ISCC.exe"
    installed.parent.mkdir()
    installed.write_bytes(b"MZ")
    assert windows.find_iscc(str(on_path.parent), [installed]) == on_path
    assert windows.find_iscc(str(tmp_path / "nowhere"), [tmp_path / "missing.exe", installed]) == installed


def test_iscc_candidates_cover_program_files_and_a_per_user_install() -> None:
    found = windows.iscc_candidates({"ProgramFiles(x86)": r"C:\PF86", "ProgramFiles": r"C:\PF", "LOCALAPPDATA": r"C:\L"})
    assert [str(path).replace("\\", "/") for path in found] == [
        "C:/PF86/Inno Setup 6/ISCC.exe", "C:/PF/Inno Setup 6/ISCC.exe", "C:/L/Programs/Inno Setup 6/ISCC.exe"]


def test_iscc_command_passes_version_folders_and_icon_as_absolute_defines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    command = windows.iscc_command(Path("ISCC.exe"), version="1.2.3rc1", bundle_dir=Path("dist/hearth"),
                                   dist=Path("dist"), icon=Path("build/hearth.ico"))
    assert command == [
        "ISCC.exe", "/Qp", "/DAppVersion=1.2.3rc1", "/DNumericVersion=1.2.3",
        f"/DSourceDir={tmp_path / 'dist' / 'hearth'}", f"/DOutputDir={tmp_path / 'dist'}",
        f"/DIconFile={tmp_path / 'build' / 'hearth.ico'}", str(ISS),
    ]
    without_icon = windows.iscc_command(Path("ISCC.exe"), version="1", bundle_dir=tmp_path, dist=tmp_path, icon=None)
    assert not any(part.startswith("/DIconFile=") for part in without_icon)
    defines = {re.sub(r"=.*", "", part[2:]) for part in command if part.startswith("/D")}
    iss = ISS.read_text(encoding="utf-8")
    assert all("{#" + name + "}" in iss for name in defines)  # every define is used by the script


@pytest.mark.parametrize(("version", "numeric"), [
    ("0.1.0", "0.1.0"), ("1.2.3rc1", "1.2.3"), ("2026.12", "2026.12"), ("1.2.3.4.5", "1.2.3.4"), ("dev", "0.0.0")])
def test_numeric_version_keeps_the_leading_numbers(version: str, numeric: str) -> None:
    assert windows.numeric_version(version) == numeric


# --- macOS: package_macos ---------------------------------------------------------------------------


def test_ad_hoc_disk_image_commands(tmp_path: Path) -> None:
    app, dmg, staging = tmp_path / "Hearth.app", tmp_path / macos.dmg_name("0.1.0"), tmp_path / "stage"
    assert macos.packaging_commands(app, dmg, staging, environ={}) == [
        ["codesign", "--force", "--deep", "-s", "-", str(app)],
        ["codesign", "--verify", "--deep", "--strict", str(app)],
        ["ditto", str(app), str(staging / "Hearth.app")],
        ["ln", "-s", "/Applications", str(staging / "Applications")],
        ["hdiutil", "create", "-volname", "Hearth", "-srcfolder", str(staging), "-ov", "-format", "UDZO", str(dmg)],
    ]
    assert dmg.name == "Hearth-0.1.0-macos-arm64.dmg"


def test_developer_id_and_notarization_hooks(tmp_path: Path) -> None:
    app, dmg, staging = tmp_path / "Hearth.app", tmp_path / "Hearth.dmg", tmp_path / "stage"
    identity = "Developer ID Application: Hearth (TEAM123456)"
    environ = {"HEARTH_CODESIGN_IDENTITY": identity, "HEARTH_NOTARY_PROFILE": "hearth-notary",
               "HEARTH_CODESIGN_ENTITLEMENTS": "/tmp/e.plist"}
    commands = macos.packaging_commands(app, dmg, staging, environ=environ)
    assert commands[0] == ["codesign", "--force", "--deep", "--options", "runtime", "--timestamp",
                           "--entitlements", "/tmp/e.plist", "-s", identity, str(app)]
    assert [command[:2] for command in commands[1:]] == [
        ["codesign", "--verify"], ["ditto", str(app)], ["ln", "-s"], ["hdiutil", "create"],
        ["codesign", "--force"], ["xcrun", "notarytool"], ["xcrun", "stapler"]]
    assert commands[5] == ["codesign", "--force", "--timestamp", "-s", identity, str(dmg)]
    assert commands[6] == ["xcrun", "notarytool", "submit", str(dmg), "--keychain-profile", "hearth-notary", "--wait"]
    assert commands[7] == ["xcrun", "stapler", "staple", str(dmg)]
    # Blank settings are the same as none.
    assert macos.packaging_commands(app, dmg, staging, environ={"HEARTH_CODESIGN_IDENTITY": " ",
                                                                "HEARTH_NOTARY_PROFILE": ""}) == \
        macos.packaging_commands(app, dmg, staging, environ={})


def test_package_macos_refuses_a_folder_that_is_no_app(tmp_path: Path) -> None:
    (tmp_path / "Hearth.app").mkdir()
    with pytest.raises(FileNotFoundError, match="not an app bundle .*pass dist/Hearth.app"):
        macos.package_macos(tmp_path / "Hearth.app", "0.1.0", tmp_path)


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS has the tools: the disk image is made there")
def test_package_macos_elsewhere_names_the_missing_tool(tmp_path: Path) -> None:
    app = tmp_path / "Hearth.app"
    (app / "Contents").mkdir(parents=True)
    (app / "Contents" / "Info.plist").write_text("<plist/>")
    with pytest.raises(FileNotFoundError, match="not found: the disk image is made on macOS"):
        macos.package_macos(app, "0.1.0", tmp_path / "dist")
    assert not (tmp_path / "dist").exists()


def test_run_with_retries_tries_again_then_gives_up(tmp_path: Path) -> None:
    counter = tmp_path / "tries"
    flaky = ["sh", "-c", f'echo x >> "{counter}"; test "$(wc -l < "{counter}")" -ge 3']
    macos.run_with_retries(flaky, tries=4, pause_s=0)
    assert counter.read_text().count("x") == 3
    counter.unlink()
    with pytest.raises(subprocess.CalledProcessError):
        macos.run_with_retries(flaky, tries=2, pause_s=0)
    assert counter.read_text().count("x") == 2


# --- icons ------------------------------------------------------------------------------------------


def test_ico_holds_every_size_as_the_png_given(pngs: dict[int, Path], tmp_path: Path) -> None:
    ico = icons.write_ico(pngs, tmp_path / "out" / "hearth.ico")
    data = ico.read_bytes()
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    assert (reserved, kind, count) == (0, 1, len(icons.ICO_SIZES))
    for index, size in enumerate(icons.ICO_SIZES):
        width, height, colours, _, planes, bits, length, offset = struct.unpack(
            "<BBBBHHII", data[6 + 16 * index: 22 + 16 * index])
        assert (width, height) == (size % 256, size % 256) and (colours, planes, bits) == (0, 1, 32)
        assert data[offset: offset + length] == pngs[size].read_bytes()
    assert icons.ICO_SIZES[-1] == 256 and icons.ICO_SIZES[0] == 16


def image_widths(path: Path) -> list[int]:
    """The width of every image in a file, as ImageMagick reads it."""
    result = subprocess.run(["identify", "-format", "%w ", str(path)], capture_output=True, text=True, check=True)
    return sorted(int(width) for width in result.stdout.split())


@pytest.mark.skipif(shutil.which("identify") is None, reason="ImageMagick's identify is not installed")
def test_ico_reads_back_in_imagemagick(pngs: dict[int, Path], tmp_path: Path) -> None:
    assert image_widths(icons.write_ico(pngs, tmp_path / "hearth.ico")) == list(icons.ICO_SIZES)


@pytest.mark.skipif(shutil.which("identify") is None, reason="ImageMagick's identify is not installed")
def test_the_real_svg_rendered_as_build_py_does_makes_an_ico(tmp_path: Path) -> None:
    pytest.importorskip("PySide6", reason="rendering the SVG needs Hearth's environment (PySide6)")
    render = [sys.executable, str(REPO / "packaging" / "render_icons.py"), str(tmp_path), *map(str, icons.REQUIRED_SIZES)]
    subprocess.run(render, check=True, capture_output=True, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    rendered = {size: tmp_path / f"{size}x{size}" / "apps" / "hearth.png" for size in icons.REQUIRED_SIZES}
    assert image_widths(icons.write_ico(rendered, tmp_path / "hearth.ico")) == list(icons.ICO_SIZES)
    assert len(list(icons.write_iconset(rendered, tmp_path / "hearth.iconset").iterdir())) == 10


def test_icons_refuse_a_missing_or_wrong_png(pngs: dict[int, Path], tmp_path: Path) -> None:
    with pytest.raises(icons.IconError, match="no 24x24 PNG"):
        icons.write_ico({size: path for size, path in pngs.items() if size != 24}, tmp_path / "a.ico")
    with pytest.raises(icons.IconError, match="is 32x16, listed as 32x32"):
        icons.write_ico({**pngs, 32: write_png(tmp_path / "wide.png", 32, 16)}, tmp_path / "b.ico")
    (tmp_path / "fake.png").write_text("not a picture")
    with pytest.raises(icons.IconError, match="is not a PNG"):
        icons.write_iconset({**pngs, 1024: tmp_path / "fake.png"}, tmp_path / "hearth.iconset")
    assert not (tmp_path / "a.ico").exists() and not (tmp_path / "hearth.iconset").exists()


def test_iconset_has_the_names_and_sizes_iconutil_wants(pngs: dict[int, Path], tmp_path: Path) -> None:
    folder = icons.write_iconset(pngs, tmp_path / "hearth.iconset")
    sizes = {path.name: icons.png_size(path) for path in folder.iterdir()}
    assert sizes == {
        "icon_16x16.png": (16, 16), "icon_16x16@2x.png": (32, 32),
        "icon_32x32.png": (32, 32), "icon_32x32@2x.png": (64, 64),
        "icon_128x128.png": (128, 128), "icon_128x128@2x.png": (256, 256),
        "icon_256x256.png": (256, 256), "icon_256x256@2x.png": (512, 512),
        "icon_512x512.png": (512, 512), "icon_512x512@2x.png": (1024, 1024),
    }
    assert icons.iconutil_command(folder, tmp_path / "hearth.icns") == [
        "iconutil", "-c", "icns", "-o", str(tmp_path / "hearth.icns"), str(folder)]


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS has iconutil")
def test_icns_elsewhere_says_it_is_made_on_macos(pngs: dict[int, Path], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="iconutil not found"):
        icons.write_icns(pngs, tmp_path / "hearth.icns")
    assert not (tmp_path / "hearth.icns").exists()
