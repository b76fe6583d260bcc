"""The outbound guard: which URLs and addresses a tenant-named target may have, and the
transport that connects to the address it vetted. No traffic leaves the machine: names are
resolved by stub resolvers, and the only receivers listen on 127.0.0.1."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from core.outbound import (
    MalformedURL,
    OutboundPolicy,
    TargetRefused,
    check_url,
    vetted_client,
    why_not_global,
)


class StubResolver:
    """A fixed name -> addresses table that counts the questions it was asked."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table, self.asked = table, []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.table:
            raise TargetRefused(f"{host} does not resolve")
        return self.table[host]


NON_GLOBAL = [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1", "100.127.255.254",  # carrier-grade NAT (shared address space)
    "0.0.0.0", "255.255.255.255", "192.0.2.10", "198.18.0.1", "240.0.0.1", "224.0.0.251",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:100.64.0.1",  # IPv4-mapped
    "2002:7f00:1::", "2002:a9fe:a9fe::",  # 6to4 around loopback and metadata
    "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1",  # NAT64 around metadata and 10.0.0.1
    "::7f00:1",  # IPv4-compatible loopback
]  # fmt: skip
GLOBAL = ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808"]


@pytest.mark.parametrize("address", NON_GLOBAL)
def test_every_non_global_address_is_refused(address: str) -> None:
    assert why_not_global(ipaddress.ip_address(address)) is not None
    policy = OutboundPolicy(resolver=StubResolver({"hooks.example.com": [address]}))
    with pytest.raises(TargetRefused, match="public internet"):
        policy.check("https://hooks.example.com/x")
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(TargetRefused, match="public internet"):
        policy.check(f"http://{literal}:8080/x")


@pytest.mark.parametrize("address", GLOBAL)
def test_global_addresses_pass_and_are_what_is_connected_to(address: str) -> None:
    resolver = StubResolver({"hooks.example.com": [address]})
    policy = OutboundPolicy(resolver=resolver)
    assert policy.vet("hooks.example.com", 443) == address
    assert resolver.asked == ["hooks.example.com"]


def test_one_internal_answer_among_public_ones_refuses_the_name() -> None:
    policy = OutboundPolicy(
        resolver=StubResolver({"mixed.example.com": ["93.184.215.14", "10.0.0.5"]})
    )
    with pytest.raises(TargetRefused, match=r"10\.0\.0\.5"):
        policy.check("https://mixed.example.com/hook")


def test_allowing_private_networks_lifts_only_the_address_rule() -> None:
    policy = OutboundPolicy(allow_private=True, resolver=StubResolver({"box": ["10.0.0.5"]}))
    assert policy.vet("box", 80) == "10.0.0.5"
    policy.check("http://127.0.0.1:9/x")
    with pytest.raises(MalformedURL):
        policy.check("http://127.0.0.1:9/x\r\nX-Injected: 1")


def test_a_name_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(TargetRefused, match="does not resolve"):
        OutboundPolicy(resolver=StubResolver({})).check("https://nowhere.example.com/")


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x\r\nX-Injected: 1",
        "http://hooks.example.com/x\n",
        "http://hooks.example.com/\tx",
        "http://hooks.example.com/x y",
        "http://hooks.example.com/\x00",
        "http://hooks.example.com/\x7f",
        "http://hooks.example.com/\x85",
        "http://hooks.example.com/\u2028",
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "gopher://hooks.example.com:70/_x",
        "http:///x",
        "http://user:pass@hooks.example.com/x",
        "http://hooks.example.com:0/x",
        "http://hooks.example.com:99999/x",
        "https://" + "a" * 2000 + ".com/",
    ],
)
def test_malformed_urls_are_refused_without_any_lookup(url: str) -> None:
    resolver = StubResolver({"hooks.example.com": ["93.184.215.14"]})
    with pytest.raises(MalformedURL):
        OutboundPolicy(resolver=resolver).check(url)
    assert resolver.asked == []
    with pytest.raises(MalformedURL):
        check_url(url)


class Receiver:
    """A loopback HTTP(S) server that records the Host header and the SNI it was given."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.hosts: list[str] = []
        self.sni: list[str | None] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                receiver.hosts.append(self.headers["host"])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if context is not None:
            context.sni_callback = lambda sock, name, ctx: receiver.sni.append(name)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_the_transport_connects_to_the_vetted_address_and_keeps_the_name(
    receiver: Receiver,
) -> None:
    # "hooks.invalid" exists only in the stub: had the client looked the name up again
    # (the DNS rebinding window), the connection would have failed
    resolver = StubResolver({"hooks.invalid": ["127.0.0.1"]})
    policy = OutboundPolicy(allow_private=True, resolver=resolver)
    with vetted_client(policy, timeout=5) as client:
        response = client.post(f"http://hooks.invalid:{receiver.port}/x", content=b"{}")
    assert response.status_code == 204
    assert receiver.hosts == [f"hooks.invalid:{receiver.port}"]
    assert resolver.asked == ["hooks.invalid"]


def test_the_transport_refuses_before_connecting(receiver: Receiver) -> None:
    resolver = StubResolver({"hooks.invalid": ["127.0.0.1"]})
    with (
        vetted_client(OutboundPolicy(resolver=resolver), timeout=5) as client,
        pytest.raises(TargetRefused, match=r"127\.0\.0\.1"),
    ):
        client.post(f"http://hooks.invalid:{receiver.port}/x", content=b"{}")
    assert receiver.hosts == []


def _certificate(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (and its key), written as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_keeps_the_name_for_sni_and_the_certificate_check(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, "hooks.invalid")
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    receiver = Receiver(server_context)
    trust = ssl.create_default_context(cafile=str(cert))
    resolver = StubResolver({"hooks.invalid": ["127.0.0.1"], "other.invalid": ["127.0.0.1"]})
    policy = OutboundPolicy(allow_private=True, resolver=resolver)
    try:
        with vetted_client(policy, timeout=5, verify=trust) as client:
            response = client.post(f"https://hooks.invalid:{receiver.port}/x", content=b"{}")
        assert response.status_code == 204
        assert receiver.sni == ["hooks.invalid"]
        assert receiver.hosts == [f"hooks.invalid:{receiver.port}"]
        # the same address under a name the certificate does not cover fails verification
        with (
            vetted_client(policy, timeout=5, verify=trust) as client,
            pytest.raises(httpx.ConnectError, match=r"certificate|hostname"),
        ):
            client.post(f"https://other.invalid:{receiver.port}/x", content=b"{}")
    finally:
        receiver.close()
