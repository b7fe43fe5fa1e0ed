"""``--tls-cert``/``--tls-key`` and ``--ca-file``: from the command line into the settings, checked before
anything starts, handed to uvicorn and to ``palaver up``'s web child; the clients' verifying context."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme

from palaver.settings import Settings
from palaver.tls_client import client_context, websocket_options
from stack.cli import _settings, build_parser, main
from stack.https import TlsSettingsError, check_tls, tls_args, uvicorn_tls
from stack.up import Stack


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pems")
    ca = trustme.CA()
    served = ca.issue_cert("localhost")
    served.cert_chain_pems[0].write_to_path(str(root / "cert.pem"))
    served.private_key_pem.write_to_path(str(root / "key.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    return {"cert": root / "cert.pem", "key": root / "key.pem", "ca": root / "ca.pem"}


def test_the_options_become_settings(pems: dict[str, Path]) -> None:
    for command in (["up"], ["run", "api", "ingest", "store"]):
        args = build_parser().parse_args([*command, "--tls-cert", str(pems["cert"]), "--tls-key", str(pems["key"])])
        settings = _settings(args)
        assert (settings.tls_cert_file, settings.tls_key_file) == (pems["cert"], pems["key"])
        assert settings.serves_https
    demo = _settings(build_parser().parse_args(["demo", "--ca-file", str(pems["ca"])]))
    assert demo.tls_ca_file == pems["ca"] and not demo.serves_https


def test_https_goes_to_uvicorn_and_to_the_web_child(pems: dict[str, Path]) -> None:
    settings = Settings(tls_cert_file=pems["cert"], tls_key_file=pems["key"], api_port=8443)
    check_tls(settings)
    assert uvicorn_tls(settings) == {"ssl_certfile": str(pems["cert"]), "ssl_keyfile": str(pems["key"])}
    assert tls_args(settings) == ["--tls-cert", str(pems["cert"]), "--tls-key", str(pems["key"])]
    assert Stack(settings).url == "https://127.0.0.1:8443"
    plain = Settings(api_port=8000)
    check_tls(plain)
    assert (uvicorn_tls(plain), tls_args(plain), Stack(plain).url) == ({}, [], "http://127.0.0.1:8000")


def test_unusable_tls_files_are_a_usage_error(pems: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    with pytest.raises(TlsSettingsError, match="needs both --tls-cert and --tls-key"):
        check_tls(Settings(tls_cert_file=pems["cert"]))
    with pytest.raises(TlsSettingsError, match=r"--tls-key .*nope.pem: no such file"):
        check_tls(Settings(tls_cert_file=pems["cert"], tls_key_file=tmp_path / "nope.pem"))
    with pytest.raises(TlsSettingsError, match="cannot serve HTTPS"):
        check_tls(Settings(tls_cert_file=pems["ca"], tls_key_file=pems["key"]))  # a key that is not the cert's
    code = main(["run", "api", "ingest", "store", "--tls-cert", str(pems["cert"]), "--data-dir", str(tmp_path)])
    assert code == 2 and "needs both --tls-cert and --tls-key" in capsys.readouterr().err


def test_clients_verify_against_the_system_and_the_ca_file(pems: dict[str, Path]) -> None:
    context = client_context(pems["ca"])
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any("Testing CA" in str(cert["subject"]) for cert in context.get_ca_certs())
    assert not any("Testing CA" in str(cert["subject"]) for cert in client_context().get_ca_certs())
    assert websocket_options("wss://h/v1/live", context) == {"ssl": context}
    assert websocket_options("ws://h/v1/live", context) == {}
    assert websocket_options("wss://h/v1/live", None) == {}
