"""Connecting to a secured Temporal: TLS (server CA, server name, client certificate)
and Temporal Cloud API keys, by environment.

First the settings (what is accepted, what is refused and how the refusal reads),
then what `journeys.temporal.connect` hands the SDK. Last, end to end: the dev server
has no TLS of its own (`temporal server start-dev --help` offers no certificate
options), so a TLS proxy that demands a client certificate from our test CA stands in
front of it, and `connect()` has to get through it with the files named by the
environment, and be turned away without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.service import TLSConfig

from journeys.devstack import TemporalDevServer, free_port
from journeys.settings import ApiSettings, Settings, TemporalSettings
from journeys.temporal import api_key, connect, tls_config

SERVER_NAME = "temporal.test"
CLIENT_NAME = "journeys-test-client"
API_KEY = "tcld-api-key-for-tests-0123456789"

# Every variable that could leak in from the shell running the tests.
TEMPORAL_VARIABLES = (
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CERT",
    "TEMPORAL_TLS_KEY",
    "TEMPORAL_TLS_CA",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TEMPORAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# --- a small PKI -----------------------------------------------------------------------


@dataclass
class Pki:
    folder: Path
    ca: Path  # signs the server's and the client's certificates
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_cert: Path  # a client certificate from another CA
    stranger_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    usage: x509.ObjectIdentifier | None = None,
    dns_name: str | None = None,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    is_ca = issuer is None
    issuer_name, signing_key = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if dns_name is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False
        )
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _certificate("Journeys test CA", ca_key, None)
    other_key = _key()
    other_ca = _certificate("Some other CA", other_key, None)
    server_key, client_key, stranger_key = _key(), _key(), _key()
    server = _certificate(
        SERVER_NAME,
        server_key,
        (ca, ca_key),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        dns_name=SERVER_NAME,
    )
    client = _certificate(
        CLIENT_NAME, client_key, (ca, ca_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    stranger = _certificate(
        "stranger", stranger_key, (other_ca, other_key), usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    return Pki(
        folder=folder,
        ca=_write_cert(folder / "ca.pem", ca),
        server_cert=_write_cert(folder / "server.pem", server),
        server_key=_write_key(folder / "server-key.pem", server_key),
        client_cert=_write_cert(folder / "client.pem", client),
        client_key=_write_key(folder / "client-key.pem", client_key),
        stranger_cert=_write_cert(folder / "stranger.pem", stranger),
        stranger_key=_write_key(folder / "stranger-key.pem", stranger_key),
    )


def _error(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return str(exc.value)


# --- settings --------------------------------------------------------------------------


def test_plain_by_default() -> None:
    settings = TemporalSettings()
    assert not settings.temporal_tls_enabled
    assert tls_config(settings) is False
    assert api_key(settings) is None


def test_tls_without_a_client_certificate() -> None:
    """TEMPORAL_TLS=true: TLS, the server checked against the system's roots."""
    settings = TemporalSettings(temporal_tls="true")
    assert tls_config(settings) is True


def test_api_key_turns_tls_on_and_stays_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_API_KEY", API_KEY)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "my-ns.a1b2c.tmprl.cloud:7233")
    settings = TemporalSettings()
    assert api_key(settings) == API_KEY
    assert tls_config(settings) is True
    assert API_KEY not in repr(settings) and API_KEY not in str(settings.model_dump())


def test_api_key_over_plain_connection_when_asked() -> None:
    """TEMPORAL_TLS=false with a key: e.g. a sidecar proxy that does the TLS."""
    settings = TemporalSettings(temporal_tls="false", temporal_api_key=API_KEY)
    assert tls_config(settings) is False
    assert api_key(settings) == API_KEY


def test_client_certificate_ca_and_server_name(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_TLS_CERT", str(pki.client_cert))
    monkeypatch.setenv("TEMPORAL_TLS_KEY", str(pki.client_key))
    monkeypatch.setenv("TEMPORAL_TLS_CA", str(pki.ca))
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", SERVER_NAME)
    settings = ApiSettings(secret="s", api_key="k")  # every process class has them
    config = tls_config(settings)
    assert isinstance(config, TLSConfig)
    assert config.client_cert == pki.client_cert.read_bytes()
    assert config.client_private_key == pki.client_key.read_bytes()
    assert config.server_root_ca_cert == pki.ca.read_bytes()
    assert config.domain == SERVER_NAME
    assert api_key(settings) is None


def test_the_temporal_cli_names_work_too(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """One environment for `journeys` and `temporal` (the CLI's `temporal options`)."""
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(pki.client_cert))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(pki.client_key))
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(pki.ca))
    settings = Settings(secret="s")
    assert settings.temporal_tls_cert == pki.client_cert
    assert settings.temporal_tls_key == pki.client_key
    assert settings.temporal_tls_ca == pki.ca


def test_ca_alone_means_tls_with_that_ca(pki: Pki) -> None:
    config = tls_config(TemporalSettings(temporal_tls_ca=pki.ca))
    assert isinstance(config, TLSConfig)
    assert config.server_root_ca_cert == pki.ca.read_bytes()
    assert config.client_cert is None and config.client_private_key is None


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deployment templates pass optional variables they have no value for as ""."""
    for name in ("TEMPORAL_TLS", "TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY", "TEMPORAL_API_KEY"):
        monkeypatch.setenv(name, "")
    settings = TemporalSettings()
    assert tls_config(settings) is False and api_key(settings) is None


@pytest.mark.parametrize("given", ["cert", "key"])
def test_a_certificate_needs_its_key_and_the_other_way_round(pki: Pki, given: str) -> None:
    kwargs: dict[str, Any] = (
        {"temporal_tls_cert": pki.client_cert}
        if given == "cert"
        else {"temporal_tls_key": pki.client_key}
    )
    with pytest.raises(ValidationError) as caught:
        TemporalSettings(**kwargs)
    have, lack = (
        ("TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY")
        if given == "cert"
        else ("TEMPORAL_TLS_KEY", "TEMPORAL_TLS_CERT")
    )
    assert f"{have} is set but {lack} is not" in _error(caught)


def test_a_missing_file_is_named(pki: Pki) -> None:
    missing = pki.folder / "nowhere" / "client.pem"
    with pytest.raises(ValidationError) as caught:
        TemporalSettings(temporal_tls_cert=missing, temporal_tls_key=pki.client_key)
    assert f"TEMPORAL_TLS_CERT: cannot read {missing} (No such file or directory)" in _error(caught)


def test_an_unreadable_path_is_named(pki: Pki) -> None:
    # A directory: unreadable as a file even for root (who reads any mode-000 file).
    with pytest.raises(ValidationError) as caught:
        TemporalSettings(temporal_tls_ca=pki.folder)
    assert f"TEMPORAL_TLS_CA: cannot read {pki.folder} (Is a directory)" in _error(caught)


def test_a_swapped_certificate_and_key_are_named_without_their_content(pki: Pki) -> None:
    with pytest.raises(ValidationError) as caught:
        TemporalSettings(temporal_tls_cert=pki.client_key, temporal_tls_key=pki.client_cert)
    message = _error(caught)
    assert f"TEMPORAL_TLS_CERT: {pki.client_key} is not a PEM certificate" in message
    assert f"TEMPORAL_TLS_KEY: {pki.client_cert} is not a PEM private key" in message
    key_body = pki.client_key.read_text().splitlines()[1]
    assert key_body not in message


def test_an_encrypted_key_is_refused(pki: Pki) -> None:
    encrypted = pki.folder / "encrypted-key.pem"
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(ValidationError) as caught:
        TemporalSettings(temporal_tls_cert=pki.client_cert, temporal_tls_key=encrypted)
    assert "is encrypted; give the key without a passphrase" in _error(caught)


def test_api_key_and_client_certificate_together_are_refused(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_API_KEY", API_KEY)
    monkeypatch.setenv("TEMPORAL_TLS_CERT", str(pki.client_cert))
    monkeypatch.setenv("TEMPORAL_TLS_KEY", str(pki.client_key))
    with pytest.raises(ValidationError) as caught:
        TemporalSettings()
    message = _error(caught)
    assert "TEMPORAL_API_KEY and a client certificate" in message
    assert "use one of them" in message
    assert API_KEY not in message


def test_tls_false_with_tls_settings_is_refused(pki: Pki) -> None:
    with pytest.raises(ValidationError) as caught:
        TemporalSettings(temporal_tls=False, temporal_tls_ca=pki.ca, temporal_tls_server_name="x")
    assert (
        "TEMPORAL_TLS is false, but TEMPORAL_TLS_CA and TEMPORAL_TLS_SERVER_NAME only apply"
        in _error(caught)
    )


# --- what connect() hands the SDK --------------------------------------------------------


@pytest.fixture
def captured_connect(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def fake_connect(target_host: str, **kwargs: Any) -> str:
        seen.update(kwargs, target_host=target_host)
        return "client"

    monkeypatch.setattr(Client, "connect", fake_connect)
    return seen


async def test_connect_passes_the_api_key_with_tls(captured_connect: dict[str, Any]) -> None:
    settings = TemporalSettings(
        temporal_address="my-ns.a1b2c.tmprl.cloud:7233",
        temporal_namespace="my-ns.a1b2c",
        temporal_api_key=API_KEY,
    )
    await connect(settings)
    assert captured_connect["target_host"] == "my-ns.a1b2c.tmprl.cloud:7233"
    assert captured_connect["namespace"] == "my-ns.a1b2c"
    assert captured_connect["api_key"] == API_KEY
    assert captured_connect["tls"] is True


async def test_connect_passes_the_client_certificate(
    pki: Pki, captured_connect: dict[str, Any]
) -> None:
    settings = TemporalSettings(
        temporal_tls_cert=pki.client_cert,
        temporal_tls_key=pki.client_key,
        temporal_tls_ca=pki.ca,
        temporal_tls_server_name=SERVER_NAME,
    )
    await connect(settings, lazy=True)
    tls = captured_connect["tls"]
    assert isinstance(tls, TLSConfig)
    assert (tls.client_cert, tls.client_private_key, tls.server_root_ca_cert, tls.domain) == (
        pki.client_cert.read_bytes(),
        pki.client_key.read_bytes(),
        pki.ca.read_bytes(),
        SERVER_NAME,
    )
    assert captured_connect["api_key"] is None
    assert captured_connect["lazy"] is True


async def test_connect_is_plain_without_settings(captured_connect: dict[str, Any]) -> None:
    await connect(TemporalSettings())
    assert captured_connect["tls"] is False and captured_connect["api_key"] is None


# --- end to end through a TLS proxy that wants our client certificate ------------------


@dataclass
class TlsProxy:
    """Terminates TLS (TLS 1.2+, ALPN h2, client certificate required and checked against
    the test CA) and passes the bytes on to the dev server's plain gRPC port."""

    port: int
    clients: list[str] = field(default_factory=list)  # subject CNs that got through


@pytest.fixture(scope="module")
async def dev_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    home = tmp_path_factory.mktemp("temporal-tls")
    server = TemporalDevServer(
        home / "temporal.db", port=free_port(), ui_port=None, log_file=home / "temporal.log"
    )
    await server.start()
    yield server.address
    server.stop()


@pytest.fixture(scope="module")
async def tls_proxy(pki: Pki, dev_server: str) -> AsyncIterator[TlsProxy]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(pki.server_cert, pki.server_key)
    context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["h2"])
    host, port = dev_server.rsplit(":", 1)
    proxy = TlsProxy(port=0)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        subject = dict(item for part in peer.get("subject", ()) for item in part)
        proxy.clients.append(str(subject.get("commonName")))
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    proxy.port = server.sockets[0].getsockname()[1]
    async with server:
        yield proxy
        server.close()


async def _health(settings: TemporalSettings) -> bool:
    client = await asyncio.wait_for(connect(settings, lazy=True), timeout=20)
    return await asyncio.wait_for(client.service_client.check_health(), timeout=20)


async def test_mtls_end_to_end(pki: Pki, tls_proxy: TlsProxy) -> None:
    settings = TemporalSettings(
        temporal_address=f"127.0.0.1:{tls_proxy.port}",
        temporal_tls_cert=pki.client_cert,
        temporal_tls_key=pki.client_key,
        temporal_tls_ca=pki.ca,
        temporal_tls_server_name=SERVER_NAME,
    )
    client = await connect(settings)  # not lazy: connects (and asks the server) now
    assert await client.service_client.check_health()
    assert (await client.count_workflows()).count >= 0  # a namespace call, through the proxy
    assert CLIENT_NAME in tls_proxy.clients


def _bad(pki: Pki, port: int, **overrides: Any) -> TemporalSettings:
    values: dict[str, Any] = {
        "temporal_address": f"127.0.0.1:{port}",
        "temporal_tls_cert": pki.client_cert,
        "temporal_tls_key": pki.client_key,
        "temporal_tls_ca": pki.ca,
        "temporal_tls_server_name": SERVER_NAME,
        **overrides,
    }
    return TemporalSettings(**values)


@pytest.mark.parametrize(
    "case",
    ["no client certificate", "client certificate of another CA", "wrong server name", "plain"],
)
async def test_turned_away_without_the_right_files(
    pki: Pki, tls_proxy: TlsProxy, case: str
) -> None:
    cases: dict[str, dict[str, Any]] = {
        "no client certificate": {"temporal_tls_cert": None, "temporal_tls_key": None},
        "client certificate of another CA": {
            "temporal_tls_cert": pki.stranger_cert,
            "temporal_tls_key": pki.stranger_key,
        },
        "wrong server name": {"temporal_tls_server_name": "elsewhere.test"},
        "plain": {
            "temporal_tls": False,
            "temporal_tls_cert": None,
            "temporal_tls_key": None,
            "temporal_tls_ca": None,
            "temporal_tls_server_name": None,
        },
    }
    settings = _bad(pki, tls_proxy.port, **cases[case])
    with pytest.raises(RuntimeError, match="Failed client connect") as caught:
        await _health(settings)
    if case == "wrong server name":
        assert "elsewhere.test" in str(caught.value)
