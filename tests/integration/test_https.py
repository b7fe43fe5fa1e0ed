"""`palaver up --tls-cert --tls-key` serves HTTPS and WSS with a certificate made here (a test CA's, as a
self-signed one would be: trusted only through the CA file), with HSTS, and Palaver's own client streams
over it, signed in as a meeting's people with tickets over TLS; what uvicorn logs of a query token is
redacted."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
import trustme
import websockets

from palaver.demo.accounts import open_meeting
from palaver.demo.client import NO_RECONNECT, stream_pcm
from palaver.tls_client import client_context
from tests.integration.infra import free_port
from tests.integration.test_cli_stack import embedded_env

pytestmark = pytest.mark.integration

SECRET = "qs-tok-7c1f0e9d2b"


@dataclass
class TlsFiles:
    cert: Path
    key: Path
    ca: Path


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    root = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    served = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(root / "cert.pem", root / "key.pem", root / "ca.pem")
    files.cert.write_bytes(b"".join(pem.bytes() for pem in served.cert_chain_pems))
    served.private_key_pem.write_to_path(str(files.key))
    ca.cert_pem.write_to_path(str(files.ca))
    return files


@dataclass
class HttpsUp:
    proc: subprocess.Popen[str]
    port: int
    data_dir: Path
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture(scope="module")
def https_up(tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsUp]:
    """``palaver up --tls-cert --tls-key`` until it says it is up; SIGTERM at the end."""
    data_dir = tmp_path_factory.mktemp("https-up")
    port = free_port()
    args = ["up", "--port", str(port), "--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key)]
    proc = subprocess.Popen([sys.executable, "-m", "stack", *args], env=embedded_env(data_dir), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    up = HttpsUp(proc, port, data_dir)

    def collect() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            up.lines.append(line)

    threading.Thread(target=collect, daemon=True).start()
    try:
        deadline = time.monotonic() + 240
        while "Palaver is up" not in up.output:
            assert proc.poll() is None, f"palaver up exited with {proc.returncode}:\n{up.output}"
            assert time.monotonic() < deadline, up.output
            time.sleep(0.2)
        yield up
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_https_answers_with_hsts_and_the_security_headers(https_up: HttpsUp, tls_files: TlsFiles) -> None:
    url = f"https://127.0.0.1:{https_up.port}"
    assert f"Palaver is up: {url}" in https_up.output
    with httpx.Client(verify=client_context(tls_files.ca), timeout=10) as http:
        health = http.get(f"{url}/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.headers["strict-transport-security"] == "max-age=31536000"
        assert f"wss://127.0.0.1:{https_up.port}" in health.headers["content-security-policy"]
        assert http.get(f"{url}/openapi.json").status_code == 200
        assert http.get(f"{url}/v1/nothing?access_token={SECRET}").status_code == 404
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{url}/healthz", timeout=10)  # the system's CAs alone do not trust it
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{https_up.port}/healthz", timeout=10)  # no plain HTTP on that port


async def test_wss_carries_the_live_socket_and_an_audio_stream(https_up: HttpsUp, tls_files: TlsFiles) -> None:
    context = client_context(tls_files.ca)
    url = f"https://127.0.0.1:{https_up.port}"
    meeting = await open_meeting(url, ["alice"], "over TLS", verify=context)  # sign-up and sign-in over TLS
    alice = meeting.people["alice"]
    ticket = await alice.ticket(meeting.meeting_id, "live")
    live = f"wss://127.0.0.1:{https_up.port}/v1/meetings/{meeting.meeting_id}/live?ticket={ticket}"
    async with websockets.connect(live, ssl=context) as ws:
        assert ws.transport.get_extra_info("ssl_object").version().startswith("TLS")
        with pytest.raises(TimeoutError):  # open and quiet: a refused ticket would close it before anything
            await asyncio.wait_for(ws.recv(), timeout=2)
    one_second = (np.sin(np.arange(16000) / 8) * 3000).astype(np.int16)
    result = await stream_pcm(url, meeting.meeting_id, alice, one_second, speed=8, reconnect=NO_RECONNECT,
                              tls=context)  # fmt: skip
    assert (result.close_code, result.acked_samples) == (1000, len(one_second)), result


async def test_the_web_log_shows_no_query_token(https_up: HttpsUp, tls_files: TlsFiles) -> None:
    context = client_context(tls_files.ca)
    meeting = await open_meeting(f"https://127.0.0.1:{https_up.port}", ["bob"], "logged", verify=context)
    async with meeting.people["bob"].client() as http:
        answer = await http.get(f"/v1/meetings/{meeting.meeting_id}/dialogues?ticket={SECRET}")
        assert answer.status_code == 200, answer.text
    log_path = https_up.data_dir / "logs" / "web.log"
    deadline = time.monotonic() + 10
    while f"{meeting.meeting_id}/dialogues?ticket=***" not in log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, "the request is in the access log, redacted"
        await asyncio.sleep(0.2)
    assert SECRET not in log_path.read_text(errors="replace")
