"""TLS and mutual TLS against a real server, through the client, the asyncio client and the CLI."""
from __future__ import annotations

import asyncio
import io
import subprocess
from pathlib import Path
from typing import Dict, Iterator

import pytest

import cellgate
import cellgate.aio
from cellgate.__main__ import main as cli_main
from conftest import Server


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _leaf(d: Path, name: str, ca: str, subject: str, extensions: str) -> None:
    (d / f"{name}.ext").write_text(extensions)
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", subject, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
    _openssl("x509", "-req", "-days", "2", "-in", str(d / f"{name}.csr"),
             "-CA", str(d / f"{ca}.pem"), "-CAkey", str(d / f"{ca}.key"), "-CAcreateserial",
             "-out", str(d / f"{name}.pem"), "-extfile", str(d / f"{name}.ext"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all its own."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    _leaf(d, "server", "ca", "/CN=localhost",
          "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _leaf(d, "client", "ca", "/CN=test-client", "extendedKeyUsage=clientAuth\n")
    return {name: str(d / name) for name in
            ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.fixture(scope="module")
def mtls_server(pki: Dict[str, str]) -> Iterator[Server]:
    s = Server(f"--tls-cert={pki['server.pem']}", f"--tls-key={pki['server.key']}",
               f"--tls-client-ca={pki['ca.pem']}")
    yield s
    assert s.stop() == 0, s.log_tail()


def test_a_client_with_its_certificate_runs_code(mtls_server: Server,
                                                 pki: Dict[str, str]) -> None:
    creds = cellgate.tls_credentials(pki["ca.pem"], pki["client.pem"], pki["client.key"])
    with cellgate.Client(mtls_server.target, credentials=creds) as client, \
            client.start_kernel() as kernel:
        assert kernel.execute("6 * 7").text == "42\n"


def test_without_a_client_certificate_the_server_is_unreachable(
        mtls_server: Server, pki: Dict[str, str]) -> None:
    with cellgate.Client(mtls_server.target,
                         credentials=cellgate.tls_credentials(pki["ca.pem"])) as client:
        with pytest.raises(cellgate.Unavailable):
            client.server_info(timeout=10)
    with cellgate.Client(mtls_server.target) as plaintext:
        with pytest.raises(cellgate.Unavailable):
            plaintext.server_info(timeout=10)


def test_the_asyncio_client_speaks_tls(mtls_server: Server, pki: Dict[str, str]) -> None:
    async def scenario() -> str:
        creds = cellgate.tls_credentials(pki["ca.pem"], pki["client.pem"], pki["client.key"])
        async with cellgate.aio.Client(mtls_server.target, credentials=creds) as client:
            info = await client.server_info()
            return info.version
    assert asyncio.run(scenario())


def test_the_cli_connects_with_tls_files(mtls_server: Server, pki: Dict[str, str]) -> None:
    out = io.StringIO()
    status = cli_main(["--target", mtls_server.target, "--tls-ca", pki["ca.pem"],
                       "--tls-cert", pki["client.pem"], "--tls-key", pki["client.key"],
                       "exec", "print('over tls')"], out=out)
    assert status == 0
    assert "over tls" in out.getvalue()


def test_a_certificate_without_its_key_is_refused() -> None:
    with pytest.raises(cellgate.InvalidArgument, match="cert_file and key_file"):
        cellgate.tls_credentials(cert_file="client.pem")
