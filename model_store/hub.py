"""Find GGUF models on the Hugging Face Hub (through huggingface_hub) and group their files.

Every call passes the token explicitly (never ``login()``, which writes it to
a plain-text file). Hub errors become sentences that say what to do. Every
request, the reachability check included, goes through huggingface_hub's own
HTTP client, so a proxy set in ``HTTPS_PROXY`` / ``HTTP_PROXY`` (and
``NO_PROXY``) is used the same way for all of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from model_store.errors import GatedModelError, HubError, HubUnreachableError

DEFAULT_ENDPOINT = "https://huggingface.co"
REACH_TIMEOUT_S = 5.0
# Answers from a proxy or gateway that could not reach the Hub behind it.
GATEWAY_FAILURES = frozenset({502, 503, 504})
UNREACHABLE = "The Hugging Face Hub cannot be reached. Check your internet connection; installed models keep working."
_SPLIT = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_QUANT = re.compile(
    r"(?<![A-Za-z0-9])(IQ\d_[A-Z]+|I?Q\d_K_[SMLX]{1,2}|Q\d_K|Q\d_\d|TQ\d_\d|BF16|F16|F32|MXFP4)(?![A-Za-z0-9])",
    re.IGNORECASE,
)
SORTS = {"downloads": "downloads", "likes": "likes", "recent": "lastModified"}


@dataclass(frozen=True)
class RepoSummary:
    """A search result."""

    id: str
    downloads: int
    likes: int
    last_modified: str
    gated: bool


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository with the size and checksums the Hub publishes.

    ``sha256`` is published for files kept in Git LFS (every large model file);
    a file kept in git itself has only ``git_sha1``, its blob id (what ``git
    hash-object`` prints). Either may be "" when the Hub published none.
    """

    name: str
    size: int
    sha256: str
    git_sha1: str = ""


@dataclass(frozen=True)
class ModelOption:
    """One downloadable model: a quantization, in one file or several parts."""

    repo_id: str
    label: str  # e.g. "Q4_K_M"
    parts: tuple[RemoteFile, ...]
    commit: str

    @property
    def size(self) -> int:
        """Bytes of all parts together."""
        return sum(part.size for part in self.parts)

    @property
    def key(self) -> str:
        """A stable id for this option (repo and first file)."""
        return f"{self.repo_id}/{self.parts[0].name}"


@dataclass(frozen=True)
class RepoDetails:
    """A repository's GGUF options and the model facts the Hub reports (``gguf``: parameters, architecture…)."""

    repo_id: str
    options: tuple[ModelOption, ...]
    gguf: dict[str, Any]


def quant_label(file_name: str) -> str:
    """The quantization named in a file name (``model.Q4_K_M.gguf`` -> ``Q4_K_M``), or the name itself."""
    match = _QUANT.search(file_name.rsplit("/", 1)[-1])
    return match.group(1).upper() if match else file_name.rsplit("/", 1)[-1].removesuffix(".gguf")


def group_options(repo_id: str, commit: str, files: list[RemoteFile]) -> tuple[ModelOption, ...]:
    """GGUF files grouped into models: a split model's ``-0000k-of-0000n`` parts become one option."""
    singles: list[ModelOption] = []
    splits: dict[str, list[RemoteFile]] = {}
    for remote in files:
        if not remote.name.lower().endswith(".gguf"):
            continue
        split = _SPLIT.match(remote.name)
        if split:
            splits.setdefault(split.group("stem"), []).append(remote)
        else:
            singles.append(ModelOption(repo_id, quant_label(remote.name), (remote,), commit))
    for stem, parts in splits.items():
        parts.sort(key=lambda remote: remote.name)
        count = int(_SPLIT.match(parts[0].name).group("count"))
        if len(parts) == count:  # an incomplete set cannot be loaded
            singles.append(ModelOption(repo_id, quant_label(stem), tuple(parts), commit))
    return tuple(sorted(singles, key=lambda option: option.size))


class HubClient:
    """Searches the Hub and lists repositories' GGUF files.

    Args:
        endpoint: the Hub's address (``HF_ENDPOINT`` for tests and mirrors).
        token: returns the user's token or None, asked at each call.
    """

    def __init__(self, *, endpoint: str | None = None, token: Callable[[], str | None] = lambda: None) -> None:
        self.endpoint = (endpoint or DEFAULT_ENDPOINT).rstrip("/")
        self._token = token

    def search(self, text: str, *, sort: str = "downloads", limit: int = 40) -> list[RepoSummary]:
        """GGUF repositories matching ``text``, most downloaded (or liked, or recent) first."""
        api = self._api()
        self._check_reachable()
        with _translated_errors(None):
            models = api.list_models(search=text or None, filter="gguf", sort=SORTS.get(sort, "downloads"),
                                     limit=limit, token=self._token() or False)
            return [
                RepoSummary(
                    id=model.id, downloads=model.downloads or 0, likes=model.likes or 0,
                    last_modified=str(model.last_modified or ""), gated=bool(model.gated),
                )
                for model in models
            ]

    def details(self, repo_id: str) -> RepoDetails:
        """The repository's GGUF options with sizes and sha256, and the Hub's model facts."""
        api = self._api()
        self._check_reachable()
        with _translated_errors(repo_id, self._token() is not None):
            info = api.model_info(repo_id, files_metadata=True, token=self._token() or False)
        files = [
            RemoteFile(name=sibling.rfilename, size=sibling.size or 0,
                       sha256=sibling.lfs.sha256 if sibling.lfs else "",
                       # For an LFS file the blob id is the pointer file's, not the content's.
                       git_sha1="" if sibling.lfs else (sibling.blob_id or ""))
            for sibling in info.siblings or []
        ]
        gguf = getattr(info, "gguf", None) or {}
        return RepoDetails(repo_id, group_options(repo_id, info.sha or "main", files), dict(gguf))

    def _check_reachable(self) -> None:
        """Fail at once when the Hub cannot be reached (huggingface_hub would retry for ~20 s).

        One HEAD request through huggingface_hub's HTTP client, with its proxy
        settings: any answer from the Hub means it is reachable; a failed
        connection, a timeout or a gateway error from a proxy means it is not.
        """
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session

        if constants.HF_HUB_OFFLINE:
            return  # huggingface_hub raises its own offline error, translated below
        try:
            response = get_session().head(f"{self.endpoint}/", timeout=REACH_TIMEOUT_S, follow_redirects=False)
        except Exception as exc:  # noqa: BLE001 - sorted below: only network failures mean "unreachable"
            if isinstance(exc, OSError) or is_network_error(exc):
                raise HubUnreachableError(UNREACHABLE) from exc
            raise
        if response.status_code in GATEWAY_FAILURES:
            raise HubUnreachableError(UNREACHABLE)

    def _api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint)


@contextmanager
def _translated_errors(repo_id: str | None, has_token: bool = False) -> Iterator[None]:
    """Turn huggingface_hub and network errors into HubError sentences."""
    from huggingface_hub.errors import GatedRepoError, OfflineModeIsEnabled, RepositoryNotFoundError

    repo = repo_id or "this repository"
    try:
        yield
    except HubError:
        raise
    except GatedRepoError as error:
        if has_token:
            raise GatedModelError(
                f"{repo} is gated and your token has no access yet: open https://huggingface.co/{repo}, "
                "accept its licence while logged in, then try again."
            ) from error
        raise GatedModelError(
            f"{repo} is gated: accept its licence at https://huggingface.co/{repo}, then add a Hugging Face "
            "access token in Hearth (Models › Access token)."
        ) from error
    except RepositoryNotFoundError as error:
        raise HubError(f"{repo} was not found on the Hub (if it is private, add an access token).") from error
    except Exception as error:  # noqa: BLE001 - whatever else the Hub or the network raised, as a sentence
        if isinstance(error, (OfflineModeIsEnabled, OSError)) or is_network_error(error):
            raise HubUnreachableError(UNREACHABLE) from error
        raise HubError(f"The Hub answered with an error: {error}") from error


def is_network_error(error: BaseException) -> bool:
    """True for a failed or broken connection (the HTTP client's transport errors, ``ConnectionError``)."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"TransportError", "ConnectionError"})
