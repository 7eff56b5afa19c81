"""PyInstaller hook for huggingface_hub, which ships none.

Its top-level names are loaded lazily (``__getattr__`` and ``import_module``),
which PyInstaller's import analysis cannot follow: collect the submodules, and
the metadata it reads its own version from. torch and friends stay out through
the spec's excludes.
"""

from PyInstaller.utils.hooks import collect_submodules, copy_metadata

# Command-line tools and integrations with other frameworks: never used by Hearth.
_SKIPPED = ("huggingface_hub.cli", "huggingface_hub.commands", "huggingface_hub.serialization._torch",
            "huggingface_hub.serialization._tensorflow", "huggingface_hub.keras_mixin", "huggingface_hub.fastai_utils",
            "huggingface_hub._webhooks_server", "huggingface_hub._webhooks_payload", "huggingface_hub._tensorboard_logger")

hiddenimports = collect_submodules("huggingface_hub", filter=lambda name: not name.startswith(_SKIPPED))
datas = copy_metadata("huggingface_hub")
