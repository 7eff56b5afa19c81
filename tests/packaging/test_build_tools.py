"""The source install says which compiler is missing and how to get it, before it starts a build that needs one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packaging"))
import bootstrap  # noqa: E402

# bootstrap.ensure_environment in its own process, on a scratch environment, with every step that would
# install or build anything replaced by one that says it was reached and stops: no test ever starts pip.
INSTALL = """
import sys, venv
from pathlib import Path
sys.path.insert(0, {packaging!r})
import bootstrap

def reached(*args, **kwargs):
    print("REACHED", args[1:3], flush=True)
    raise SystemExit(99)

bootstrap.VENV = Path({scratch!r}) / ".venv"
bootstrap.STAMP = bootstrap.VENV / "hearth-install.json"
bootstrap.pip = bootstrap.pip_succeeds = bootstrap.pip_wheel = reached
venv.EnvBuilder.create = reached
if {cached!r}:  # a wheel built by an earlier install: nothing needs compiling
    build = bootstrap.engine_builds(bootstrap.engine_choice("cpu"))[0]
    folder = bootstrap.wheel_cache_folder(build.flags)
    folder.mkdir(parents=True)
    (folder / "llama_cpp_python-{version}-py3-none-linux_x86_64.whl").write_bytes(b"")
bootstrap.ensure_environment(with_tests=False, gpu_backend="cpu")
"""


def install(tmp_path: Path, *, cached: bool, **env: str) -> subprocess.CompletedProcess:
    code = INSTALL.format(packaging=str(REPO / "packaging"), scratch=str(tmp_path), cached=cached,
                          version=bootstrap.LLAMA_CPP_VERSION)
    wheels = tmp_path / "wheels"
    wheels.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "HEARTH_WHEEL_CACHE": str(wheels), **env})


def test_without_a_c_compiler_the_install_says_so_before_pip_runs(tmp_path: Path) -> None:
    result = install(tmp_path, cached=False, CC="/nonexistent")
    assert "REACHED" not in result.stdout, "the install went on to pip or the build"
    assert result.returncode == 1
    message = result.stderr.strip()
    assert message.startswith("Building llama.cpp needs a C and a C++ compiler")
    assert "CC=/nonexistent names no program" in message
    assert "Traceback" not in message and "CMake" not in message
    hint = bootstrap.install_hint(bootstrap.platform.system(), bootstrap._os_release())
    assert hint in message
    assert not (tmp_path / ".venv").exists()


def test_a_cached_wheel_needs_no_compiler(tmp_path: Path) -> None:
    result = install(tmp_path, cached=True, CC="/nonexistent")
    assert "REACHED" in result.stdout and result.returncode == 99  # went on to make the environment
    assert "compiler" not in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="a trial compile needs a Unix compiler")
def test_each_compiler_is_checked_by_compiling_a_small_program(tmp_path: Path) -> None:
    if not (shutil.which("cc") and shutil.which("c++")):
        pytest.skip("needs this machine's C and C++ compilers")
    assert bootstrap.missing_build_tools() == ""
    # A C compiler named as CXX cannot compile C++ headers.
    problem = bootstrap.missing_build_tools({**os.environ, "CXX": "cc -x c"})
    assert "the C++ compiler cc cannot compile a test program" in problem
    assert "C compiler" not in problem.replace("C++ compiler", "")
    nothing = bootstrap.missing_build_tools({"PATH": str(tmp_path)})
    assert "no C compiler was found (cc, gcc, clang) and no C++ compiler was found" in nothing


@pytest.mark.parametrize(
    ("system", "os_release", "words"),
    [("Linux", 'ID=debian\n', "sudo apt install build-essential"),
     ("Linux", 'ID=linuxmint\nID_LIKE="ubuntu debian"\n', "sudo apt install build-essential"),
     ("Linux", 'ID=fedora\n', "sudo dnf install gcc-c++"),
     ("Linux", 'ID="rocky"\nID_LIKE="rhel centos fedora"\n', "sudo dnf install gcc-c++"),
     ("Linux", 'ID=arch\n', "sudo pacman -S base-devel"),
     ("Linux", '', "Install gcc and g++ (or clang)"),
     ("Darwin", '', "xcode-select --install"),
     ("Windows", '', "Visual Studio Build Tools")],
)
def test_the_hint_fits_the_system(system: str, os_release: str, words: str) -> None:
    assert words in bootstrap.install_hint(system, os_release)
