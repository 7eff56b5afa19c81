"""Errors raised by model_store. Each message is a sentence a person can act on."""


class ModelStoreError(Exception):
    """Root of every error model_store raises."""


class BuiltinModelError(ModelStoreError):
    """The built-in demo model could not be installed."""


class DiskFullError(ModelStoreError, OSError):
    """There is not enough free disk space for a file Hearth must write."""


class ModelNotInstalledError(ModelStoreError, LookupError):
    """No installed model matches the request."""
