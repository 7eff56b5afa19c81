"""Searching the Hub and reading a repository's GGUF files, against a local server speaking the Hub's API."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest

from model_store.downloads import ModelDownloader
from model_store.hub import (
    GatedModelError,
    HubClient,
    HubError,
    HubUnreachableError,
    RemoteFile,
    group_options,
    quant_label,
)
from model_store.registry import ModelRegistry
from tests.conftest import hub_repos
from tests.http_proxy import HttpProxy
from tests.hub_server import COMMIT, HubFile, HubRepo, HubServer, git_blob_sha1

# A name that resolves nowhere: only the proxy knows where the Hub behind it is.
HIDDEN_HUB = "hub.invalid"


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


@pytest.fixture
def fresh_hub_session():
    """huggingface_hub's shared HTTP client reads the proxy settings when made: make it anew, before and after."""
    from huggingface_hub.utils import close_session

    close_session()
    yield
    close_session()


def test_the_hub_is_reached_through_an_http_proxy(hub, monkeypatch, fresh_hub_session) -> None:
    with HttpProxy({HIDDEN_HUB: hub.address}) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        client = HubClient(endpoint=f"http://{HIDDEN_HUB}")
        assert [r.id for r in client.search("tiny")] == ["acme/Tiny-Chat-GGUF"]
        assert client.details("acme/Tiny-Chat-GGUF").options[0].label == "Q4_K_M"
    assert ("HEAD", f"http://{HIDDEN_HUB}/") in proxy.requests
    assert any(target.startswith(f"http://{HIDDEN_HUB}/api/models?") for _, target in proxy.requests)


def tls_for(host: str, folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context with a self-signed certificate for ``host``, and the certificate's file for clients."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "hub.pem", folder / "hub.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


def test_the_hub_is_reached_and_downloaded_from_through_an_https_proxy(
    gguf_files, tmp_path, monkeypatch, fresh_hub_session
) -> None:
    context, cert_file = tls_for(HIDDEN_HUB, tmp_path)
    with HubServer(hub_repos(gguf_files), tls=context) as hub, HttpProxy({HIDDEN_HUB: hub.address}) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # TLS stays verified, against the test's own CA
        endpoint = f"https://{HIDDEN_HUB}"
        client = HubClient(endpoint=endpoint)
        assert [r.id for r in client.search("tiny")] == ["acme/Tiny-Chat-GGUF"]
        option = next(o for o in client.details("acme/Tiny-Chat-GGUF").options if o.label == "Q4_K_M")
        models = tmp_path / "models"
        models.mkdir()
        model = ModelDownloader(models, ModelRegistry(models / "models.json"), endpoint=endpoint).download(option)
        assert model.path.read_bytes() == gguf_files["small"].read_bytes()
    assert ("CONNECT", f"{HIDDEN_HUB}:443") in proxy.requests
    assert any(path.endswith(f"/resolve/{COMMIT}/tiny-chat.Q4_K_M.gguf") for _, path, _ in hub.log)


def test_a_proxy_that_cannot_reach_the_hub_means_unreachable(monkeypatch, fresh_hub_session) -> None:
    with HttpProxy({}) as proxy:  # answers 502 Bad Gateway for every host
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        with pytest.raises(HubUnreachableError, match="cannot be reached"):
            HubClient(endpoint=f"http://{HIDDEN_HUB}").search("tiny")
    assert proxy.requests == [("HEAD", f"http://{HIDDEN_HUB}/")]


def test_a_file_kept_in_git_has_its_blob_id_and_no_sha256(gguf_files) -> None:
    repo = HubRepo("acme/Git-GGUF", [HubFile("git.Q4_0.gguf", gguf_files["small"], lfs=False),
                                     HubFile("lfs.Q8_0.gguf", gguf_files["big"])])
    with HubServer([repo]) as hub:
        details = HubClient(endpoint=hub.endpoint).details("acme/Git-GGUF")
    kept_in_git, in_lfs = (option.parts[0] for option in details.options)
    assert (kept_in_git.sha256, kept_in_git.git_sha1) == ("", git_blob_sha1(gguf_files["small"].read_bytes()))
    assert len(in_lfs.sha256) == 64 and in_lfs.git_sha1 == ""  # an LFS file's blob id is its pointer's
