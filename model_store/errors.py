"""Errors raised by model_store, all under one root. Each message is a sentence a person can act on."""


class ModelStoreError(Exception):
    """Root of every error model_store raises."""


class BuiltinModelError(ModelStoreError):
    """The built-in demo model could not be installed."""


class DiskFullError(ModelStoreError, OSError):
    """There is not enough free disk space for a file Hearth must write."""


class ModelNotInstalledError(ModelStoreError, LookupError):
    """No installed model matches the request."""


class HubError(ModelStoreError):
    """The Hub refused or failed a request; the message says why."""


class HubUnreachableError(HubError, ConnectionError):
    """No connection to the Hub (offline, DNS, proxy…)."""


class GatedModelError(HubError, PermissionError):
    """The repository needs an accepted licence and a token that has access."""


class DownloadError(ModelStoreError):
    """A download failed; the message says why and what to do."""


class ChecksumMismatchError(DownloadError):
    """The file does not match the checksum the Hub publishes (damaged in transfer)."""


class UnsafeNameError(DownloadError, ValueError):
    """A repository or file name that could write outside the models folder."""


class DownloadCancelled(DownloadError):
    """The download was stopped (its partial file is kept unless it was discarded)."""


class CodeCarryingFileError(ModelStoreError, ValueError):
    """The file is in a format that can run code when opened (a pickle, a PyTorch checkpoint, joblib…)."""


class ProviderNotFoundError(ModelStoreError, LookupError):
    """No saved provider has this id (it was removed)."""


class DocumentError(ModelStoreError):
    """A document could not be read or indexed.

    ``reason`` is the part of the sentence after "<file> was not added: ",
    e.g. "it is encrypted with a password"; ``path`` is the file.
    """

    def __init__(self, path, reason: str) -> None:
        from pathlib import Path

        self.path = Path(path)
        self.reason = reason.rstrip(".")
        super().__init__(f"{self.path.name} was not added: {self.reason}.")


class UnreadableDocumentError(DocumentError, ValueError):
    """Not a document Hearth can read: a binary file, an unsupported format, a broken PDF or .docx."""


class EncryptedDocumentError(DocumentError, PermissionError):
    """The document is protected by a password."""


class DocumentVanishedError(DocumentError, FileNotFoundError):
    """The file disappeared (or became unreadable) while it was being read."""
