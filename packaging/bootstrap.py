#!/usr/bin/env python3
"""Install Hearth into its own environment, then start it or run its tests.

    python3 packaging/bootstrap.py run  [-- app arguments]
    python3 packaging/bootstrap.py test [-- pytest arguments]

The first run creates ``.venv`` next to this repository, builds
llama-cpp-python once with portable CPU flags, plus the GPU backend this
machine has the toolchain for (``engine_backend.py``; ``HEARTH_GPU_BACKEND``
overrides), caches the wheel per user (so later installs take seconds) and
installs everything else from PyPI. A later run finds nothing changed and
starts at once. Uses only the standard library: it runs before anything is
installed.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Callable, NamedTuple

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # engine_backend.py beside this script, however this one was started or loaded
import engine_backend  # noqa: E402

REPO = HERE.parent
VENV = REPO / ".venv"
STAMP = VENV / "hearth-install.json"
LLAMA_CPP_VERSION = "0.3.36"
APP_REQUIREMENTS = REPO / "requirements.txt"
TEST_REQUIREMENTS = REPO / "requirements-test.txt"
MIN_PYTHON = (3, 10)
GPU_NAMES = {"cuda": "CUDA", "rocm": "ROCm", "metal": "Metal", "vulkan": "Vulkan"}
# Debian packages the tests use: a real Secret Service (gnome-keyring on a private D-Bus) and secret-tool.
TEST_SYSTEM_PACKAGES = {"gnome-keyring-daemon": "gnome-keyring", "dbus-daemon": "dbus", "secret-tool": "libsecret-tools"}


def main() -> int:
    parser = argparse.ArgumentParser(description="Install Hearth, then run it or its tests.")
    parser.add_argument("action", choices=["run", "test", "install"], help="what to do after installing")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed on to the app or pytest")
    args = parser.parse_args()
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest

    if sys.version_info < MIN_PYTHON:
        print(f"Hearth needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer; this is {platform.python_version()}.")
        return 1
    started = time.monotonic()
    if args.action == "test":
        ensure_system_packages(TEST_SYSTEM_PACKAGES)
    python = ensure_environment(with_tests=args.action == "test")
    say(f"Environment ready in {time.monotonic() - started:.1f} s.")
    if args.action == "install":
        return 0
    if args.action == "run":
        command = [str(python), str(REPO / "main.py"), *rest]
    else:
        command = [str(python), "-m", "pytest", *rest]
    return subprocess.call(command, cwd=REPO)


class Build(NamedTuple):
    """One way to build the engine: the backend it brings, its CMake flags, the GPU compiler it depends on."""

    backend: str
    flags: list[str]
    toolchain: str = ""


def ensure_environment(*, with_tests: bool, gpu_backend: str | None = None) -> Path:
    """Create or update ``.venv``; return its Python. Does nothing when already up to date.

    ``gpu_backend`` ("cpu", "cuda" …) overrides ``HEARTH_GPU_BACKEND``; None reads it.
    """
    python = venv_python()
    choice = engine_choice(os.environ.get("HEARTH_GPU_BACKEND") if gpu_backend is None else gpu_backend)
    builds = engine_builds(choice)
    wanted = install_fingerprint(with_tests=with_tests, builds=builds)
    stamp = read_stamp() if python.exists() else {}
    if all(stamp.get(key) == value for key, value in wanted.items()):
        return python
    if not any(cached_wheel(wheel_cache_folder(build.flags, build.toolchain)) for build in builds):
        missing = missing_build_tools()  # a 20-minute build would end in CMake's error: say it now, plainly
        if missing:
            raise SystemExit(missing)
    if not python.exists():
        say(f"Creating a Python environment in {VENV} ...")
        venv.EnvBuilder(with_pip=True).create(VENV)
    say("Installing Hearth's dependencies (the first time takes several minutes) ...")
    pip(python, "install", "--upgrade", "pip")
    say(choice.reason)
    wheel_path, built = llama_cpp_wheel(builds, build=functools.partial(pip_wheel, python))
    wheel = str(wheel_path)
    pip(python, "install", "--force-reinstall", "--no-deps", wheel)  # same version, other build: replace it
    pip(python, "install", wheel)
    pip(python, "install", "-r", str(APP_REQUIREMENTS))
    if with_tests:
        pip(python, "install", "-r", str(TEST_REQUIREMENTS))
    same_app = stamp.get("app") == wanted["app"]
    engine = engine_stamp(choice, built)
    STAMP.write_text(json.dumps({**(stamp if same_app else {}), **wanted, **engine}), encoding="utf-8")
    return python


def engine_stamp(choice: engine_backend.Choice, built: str) -> dict[str, str]:
    """What the stamp says about the engine, for the app to show: the backend installed and why."""
    reason = choice.reason if built == choice.backend else f"The {GPU_NAMES[choice.backend]} build failed: CPU only."
    return {"engine_backend": built, "engine_backend_reason": reason}


def engine_choice(override: str | None) -> engine_backend.Choice:
    """The GPU backend to build for this machine (``override``: a HEARTH_GPU_BACKEND value)."""
    try:
        backend = engine_backend.parse_override(override)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    return engine_backend.choose(engine_backend.gather_facts(backend), backend)


def ensure_system_packages(packages: dict[str, str]) -> None:
    """Install missing Debian packages (command -> package) when apt and root are at hand; else say what is missing."""
    import shutil

    missing = sorted({package for command, package in packages.items() if shutil.which(command) is None})
    if not missing:
        return
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        say(f"Installing system packages for the tests: {', '.join(missing)} ...")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env,
                          stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL)
            subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env, stdout=subprocess.DEVNULL)
    else:
        say(f"Keyring tests will be skipped: install {', '.join(missing)} (e.g. sudo apt-get install ...).")


def llama_cpp_wheel(builds: list[Build], *, build: Callable[[list[str], Path], bool]) -> tuple[Path, str]:
    """A llama-cpp-python wheel for this machine, built once and cached; returns it and its backend.

    ``build(flags, folder)`` makes a wheel in ``folder`` and says whether it worked.
    The GPU build comes first; when it fails (marked, so later installs skip it)
    the CPU chain runs as it always has: any CPU wheel already cached, else the
    one with every CPU variant, else (an old compiler, say) the single portable one.

    Raises:
        SystemExit: not even the last CPU build worked.
    """
    gpu = [candidate for candidate in builds if candidate.backend != "cpu"]
    cpu = [candidate for candidate in builds if candidate.backend == "cpu"]
    for candidate in gpu:
        name = GPU_NAMES[candidate.backend]
        cache = wheel_cache_folder(candidate.flags, candidate.toolchain)
        failed = cache / "build-failed.txt"
        if not cached_wheel(cache):
            if failed.exists():
                say(f"The {name} build failed on an earlier install: CPU only (delete {failed} to try again).")
                continue
            say(f"Compiling the {name} engine once (10 to 40 minutes, cached afterwards) ...")
        if cached_wheel(cache) or (build(candidate.flags, cache) and cached_wheel(cache)):
            return cached_wheel(cache), candidate.backend
        cache.mkdir(parents=True, exist_ok=True)
        failed.write_text(" ".join(candidate.flags) + "\n", encoding="utf-8")  # a failed GPU build is not retried
        say(f"The {name} build failed (its messages are above): building the CPU engine instead.")
    for candidate in cpu:
        if cached_wheel(wheel_cache_folder(candidate.flags)):
            return cached_wheel(wheel_cache_folder(candidate.flags)), "cpu"
    for number, candidate in enumerate(cpu, 1):
        cache = wheel_cache_folder(candidate.flags)
        say("Building the llama.cpp engine (once; 6 to 20 minutes, cached afterwards) ...")
        if build(candidate.flags, cache) and cached_wheel(cache):
            return cached_wheel(cache), "cpu"
        if number < len(cpu):
            say("That build failed; building the single portable variant instead ...")
    raise SystemExit("Installing failed: llama-cpp-python could not be built (pip's messages are above).")


# What CMake looks for when CC / CXX are not set (its CMAKE_<LANG>_COMPILER search order on Unix).
COMPILERS = {"C": ("CC", ("cc", "gcc", "clang"), ".c", "int main(void) { return 0; }\n"),
             "C++": ("CXX", ("c++", "g++", "clang++"), ".cpp", "#include <cstddef>\nint main() { return 0; }\n")}


def missing_build_tools(env: dict[str, str] | None = None) -> str:
    """What building llama.cpp needs and this machine lacks, as a sentence that says how to get it; "" if nothing.

    It needs a C and a C++ compiler: ``$CC`` and ``$CXX`` when set (CMake
    honours them), else the ones CMake finds; each must compile a tiny
    program. CMake and Ninja are not needed: scikit-build-core installs them
    from PyPI when the system has none. Nor are Python's headers:
    llama-cpp-python binds llama.cpp with ctypes (its wheel is ``py3-none``).
    """
    env = dict(os.environ if env is None else env)
    problems = [problem for language in COMPILERS if (problem := _compiler_problem(language, env))]
    if not problems:
        return ""
    return (f"Building llama.cpp needs a C and a C++ compiler, and {' and '.join(problems)}. "
            f"{install_hint(platform.system(), _os_release())}, then run this again.")


def _compiler_problem(language: str, env: dict[str, str]) -> str:
    """Why the ``language`` compiler cannot be used (a clause), or ""."""
    variable, candidates, suffix, source = COMPILERS[language]
    if env.get(variable):
        command = shlex.split(env[variable], posix=sys.platform != "win32")
        if not command or not shutil.which(command[0], path=env.get("PATH")):
            return f"{variable}={env[variable]} names no program (unset it, or point it to a {language} compiler)"
    elif sys.platform == "win32":
        return "" if _msvc_found(env) else f"no {language} compiler was found (Visual Studio's C++ tools)"
    else:
        found = next((name for name in candidates if shutil.which(name, path=env.get("PATH"))), None)
        if found is None:
            return f"no {language} compiler was found ({', '.join(candidates)})"
        command = [found]
    if sys.platform == "win32":
        return ""  # cl needs Visual Studio's environment to compile; CMake sets that up itself
    with tempfile.TemporaryDirectory() as folder:
        program = Path(folder) / f"check{suffix}"
        program.write_text(source, encoding="utf-8")
        try:
            result = subprocess.run([*command, "-c", str(program), "-o", str(Path(folder) / "check.o")],
                                    capture_output=True, text=True, timeout=120, env=env)
        except (OSError, subprocess.SubprocessError):
            result = None
    if result is None or result.returncode != 0:
        return f"the {language} compiler {command[0]} cannot compile a test program"
    return ""


def _msvc_found(env: dict[str, str]) -> bool:
    """Whether Visual Studio's C++ compiler is installed (on PATH, or found by vswhere as CMake does)."""
    if shutil.which("cl", path=env.get("PATH")):
        return True
    root = env.get("ProgramFiles(x86)") or env.get("ProgramFiles") or r"C:\Program Files (x86)"
    vswhere = Path(root) / "Microsoft Visual Studio" / "Installer" / "vswhere.exe"
    if not vswhere.exists():
        return False
    command = [str(vswhere), "-latest", "-products", "*", "-requires",
               "Microsoft.VisualStudio.Component.VC.Tools.x86.x64", "-property", "installationPath"]
    try:
        return bool(subprocess.run(command, capture_output=True, text=True, timeout=60).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return False


def install_hint(system: str, os_release: str = "") -> str:
    """How to install C and C++ compilers on this system (``platform.system()``, /etc/os-release's text)."""
    if system == "Darwin":
        return "On macOS, install Apple's command line tools: xcode-select --install"
    if system == "Windows":
        return ("On Windows, install Visual Studio Build Tools with the \"Desktop development with C++\" workload "
                "(https://visualstudio.microsoft.com/visual-cpp-build-tools/)")
    fields = dict(line.split("=", 1) for line in os_release.splitlines() if "=" in line)
    ids = {word.strip('"').lower() for key in ("ID", "ID_LIKE") for word in fields.get(key, "").strip('"').split()}
    for family, hint in (({"debian", "ubuntu"}, "On Debian or Ubuntu: sudo apt install build-essential"),
                         ({"fedora", "rhel", "centos"}, "On Fedora: sudo dnf install gcc-c++"),
                         ({"arch"}, "On Arch Linux: sudo pacman -S base-devel"),
                         ({"suse", "opensuse"}, "On openSUSE: sudo zypper install gcc-c++"),
                         ({"alpine"}, "On Alpine: sudo apk add build-base")):
        if ids & family:
            return hint
    return "Install gcc and g++ (or clang) with your system's package manager"


def _os_release() -> str:
    try:
        return Path("/etc/os-release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cached_wheel(folder: Path) -> Path | None:
    """The llama-cpp-python wheel in ``folder``; None when there is none."""
    existing = sorted(folder.glob("llama_cpp_python-*.whl"))
    return existing[-1] if existing else None


def pip_wheel(python: Path, flags: list[str], folder: Path) -> bool:
    """Build llama-cpp-python with these CMake flags into ``folder`` (pip, in the environment); whether it worked."""
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CMAKE_ARGS=cmake_args(flags), CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
    command = ["wheel", "--no-deps", "--no-cache-dir", "-w", str(folder), f"llama-cpp-python=={LLAMA_CPP_VERSION}"]
    return pip_succeeds(python, *command, env=env)


def cmake_args(flags: list[str]) -> str:
    """``CMAKE_ARGS`` for these flags: scikit-build-core splits it like a shell (a path may hold a space)."""
    return " ".join(shlex.quote(flag) for flag in flags)


def wheel_cache_folder(flags: list[str], toolchain: str = "") -> Path:
    """Where the wheel built with ``flags`` (against ``toolchain``, for a GPU build) is kept."""
    text = " ".join(flags) + (f"\0{toolchain}" if toolchain else "")
    key = hashlib.sha256(text.encode()).hexdigest()[:12]
    return wheel_cache_dir() / f"llama-cpp-python-{LLAMA_CPP_VERSION}-{platform.machine()}-{key}"


def engine_builds(choice: engine_backend.Choice, cpu: list[list[str]] | None = None) -> list[Build]:
    """The builds to try, best first: the chosen GPU backend on top of the best CPU flags, then the CPU builds.

    On x86-64 the GPU flags join the set with every CPU variant (``GGML_BACKEND_DL``:
    the GPU backend becomes one more loadable library in ``llama_cpp/lib``); elsewhere
    they join the portable set. ``cpu``: the CPU flag sets, :func:`build_flag_sets` by default.
    """
    cpu = build_flag_sets() if cpu is None else cpu
    gpu = [Build(choice.backend, [*cpu[0], *choice.flags], choice.toolchain)] if choice.backend != "cpu" else []
    return [*gpu, *(Build("cpu", flags) for flags in cpu)]


def build_flag_sets() -> list[list[str]]:
    """CMake flags of the CPU builds to try, best first.

    Never a native build: it would not run on other machines, and on CPUs
    with AMX tiles it crashes on the first token. On x86-64 the CPU backend
    is built in every variant llama.cpp knows (SSE4.2 … AVX-512, as loadable
    libraries next to the others), and Hearth picks the best safe one for
    the CPU it finds at run time (inference/cpu_backends.py). The fallback
    is one portable build with the widest common instruction set of this CPU.
    These lists are the wheel cache key of every CPU install: keep them byte for byte.
    """
    return cpu_flag_sets(platform.machine(), cpu_features())


def cpu_flag_sets(machine: str, cpu: set[str]) -> list[list[str]]:
    """:func:`build_flag_sets` for a processor (``platform.machine()``, its /proc/cpuinfo flags)."""
    common = ["-DGGML_NATIVE=OFF", "-DLLAVA_BUILD=OFF"]  # no multimodal models yet: a third less to build
    portable = [*common, "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF"]
    if machine.lower() not in ("x86_64", "amd64"):
        return [portable]
    avx2 = {"avx2", "fma", "f16c"} <= cpu or not cpu  # unknown CPU (not Linux): assume a post-2013 one
    avx = avx2 or "avx" in cpu
    for name, enabled in (("AVX", avx), ("AVX2", avx2), ("FMA", avx2), ("F16C", avx2), ("AVX512", False)):
        portable.append(f"-DGGML_{name}={'ON' if enabled else 'OFF'}")
    # CMAKE_INSTALL_BINDIR: the variant libraries go next to libllama, where Hearth looks for them.
    variants = [*common, "-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON", "-DCMAKE_INSTALL_BINDIR=llama_cpp/lib"]
    return [variants, portable]


def cpu_features() -> set[str]:
    """The CPU's instruction-set flags on Linux; empty where /proc/cpuinfo does not exist."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def wheel_cache_dir() -> Path:
    """Per-user folder for built wheels (override with HEARTH_WHEEL_CACHE)."""
    if os.environ.get("HEARTH_WHEEL_CACHE"):
        return Path(os.environ["HEARTH_WHEEL_CACHE"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "Hearth" / "Cache"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / "Hearth"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hearth"
    return base / "wheels"


def install_fingerprint(*, with_tests: bool, builds: list[Build]) -> dict[str, str]:
    """What the environment must match: requirement files, engine builds, this script and engine_backend.py."""
    engine = repr([build.flags for build in builds]) + repr([build.toolchain for build in builds])
    parts = [APP_REQUIREMENTS.read_bytes(), engine.encode(), Path(__file__).read_bytes(),
             Path(engine_backend.__file__).read_bytes()]
    fingerprint = {"python": platform.python_version(), "app": hashlib.sha256(b"\0".join(parts)).hexdigest()}
    if with_tests:
        fingerprint["test"] = hashlib.sha256(TEST_REQUIREMENTS.read_bytes()).hexdigest()
    return fingerprint


def read_stamp() -> dict[str, str]:
    """The fingerprint of the last finished install; empty when there is none."""
    try:
        stamp = json.loads(STAMP.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def venv_python() -> Path:
    """The environment's Python executable."""
    return VENV / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def pip_succeeds(python: Path, *args: str, env: dict[str, str] | None = None) -> bool:
    """Run pip in the environment; return whether it worked."""
    command = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args]
    return subprocess.run(command, env=env, cwd=REPO).returncode == 0


def pip(python: Path, *args: str, env: dict[str, str] | None = None) -> None:
    """Run pip in the environment; stop with its message when it fails."""
    command = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args]
    result = subprocess.run(command, env=env, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"Installing failed: {' '.join(command)} exited with {result.returncode}.")


def say(message: str) -> None:
    print(f"[hearth] {message}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
