"""Searching the Hub and reading a repository's GGUF files, against a local server speaking the Hub's API."""

from __future__ import annotations

import pytest

from model_store.hub import (
    GatedModelError,
    HubClient,
    HubError,
    HubUnreachableError,
    RemoteFile,
    group_options,
    quant_label,
)


def test_search_lists_gguf_repositories_by_downloads_or_likes(hub) -> None:
    client = HubClient(endpoint=hub.endpoint)
    assert [r.id for r in client.search("gguf")][:3] == ["acme/Tiny-Chat-GGUF", "acme/Gated-GGUF", "acme/Split-GGUF"]
    assert client.search("gguf", sort="likes")[0].id == "acme/Split-GGUF"
    assert [r.id for r in client.search("tiny")] == ["acme/Tiny-Chat-GGUF"]


def test_details_group_files_by_quantization_with_sizes_and_hashes(hub, gguf_files) -> None:
    details = HubClient(endpoint=hub.endpoint).details("acme/Tiny-Chat-GGUF")
    labels = [(option.label, option.size) for option in details.options]
    assert labels == [("Q4_K_M", gguf_files["small"].stat().st_size), ("Q8_0", gguf_files["big"].stat().st_size)]
    assert all(len(option.parts[0].sha256) == 64 for option in details.options)
    assert details.gguf["total"] == 1_000_000  # README.md is not an option


def test_a_split_model_is_one_option(hub, gguf_files) -> None:
    (option,) = HubClient(endpoint=hub.endpoint).details("acme/Split-GGUF").options
    assert option.label == "Q4_K_M" and len(option.parts) == 2
    assert option.size == gguf_files["small"].stat().st_size + gguf_files["big"].stat().st_size


def test_a_gated_repository_says_what_to_do(hub) -> None:
    with pytest.raises(GatedModelError, match="accept its licence at https://huggingface.co/acme/Gated-GGUF"):
        HubClient(endpoint=hub.endpoint).details("acme/Gated-GGUF")
    with pytest.raises(GatedModelError, match="your token has no access yet"):
        HubClient(endpoint=hub.endpoint, token=lambda: "hf_wrong").details("acme/Gated-GGUF")
    details = HubClient(endpoint=hub.endpoint, token=lambda: "hf_good_token").details("acme/Gated-GGUF")
    assert details.options[0].label == "Q4_0"
    assert ("GET", "/api/models/acme/Gated-GGUF", None) in hub.log


def test_unknown_repository_and_unreachable_hub(hub) -> None:
    with pytest.raises(HubError, match="was not found"):
        HubClient(endpoint=hub.endpoint).details("acme/Nope")
    with pytest.raises(HubUnreachableError, match="cannot be reached"):
        HubClient(endpoint="http://127.0.0.1:9").search("anything")


@pytest.mark.parametrize(
    ("name", "label"),
    [("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", "Q4_K_M"), ("model.q8_0.gguf", "Q8_0"), ("x-IQ4_XS.gguf", "IQ4_XS"),
     ("llama-f16.gguf", "F16"), ("weights.gguf", "weights")],
)
def test_quant_labels(name: str, label: str) -> None:
    assert quant_label(name) == label


def test_an_incomplete_split_set_is_not_offered() -> None:
    files = [RemoteFile("m-Q4_K_M-00001-of-00003.gguf", 1, "a"), RemoteFile("m-Q4_K_M-00002-of-00003.gguf", 1, "b")]
    assert group_options("r/m", "c", files) == ()


def test_offline_mode_is_reported_as_unreachable(hub, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubUnreachableError):
        HubClient(endpoint=hub.endpoint).search("tiny")
