"""catalog_service.http against real web servers on loopback, playing good and hostile image hosts."""

from __future__ import annotations

import datetime
import pickle
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from catalog_service import http

PNG = (Path(__file__).parent / "fixtures" / "coffee.png").read_bytes()
GIGABYTE = 1024**3

Route = Callable[[BaseHTTPRequestHandler], None]


class Peer:
    """A loopback web server playing a shop's image host: tests add routes and read what it saw."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, Route] = {}
        self.seen: list[tuple[str, dict[str, str]]] = []  # (path, headers) of every request
        self.hung_up = threading.Event()  # the client closed the connection while we were still sending
        self.stopping = threading.Event()  # set at teardown; slow routes wait on it instead of sleeping
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {"peer": self}))
        self.server.daemon_threads = False  # so server_close() joins handler threads: none outlive a test
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def url(self, path: str = "/", host: str = "127.0.0.1", scheme: str = "http") -> str:
        """An address of this server."""
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        """Release slow routes, stop serving and close every socket."""
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class _Handler(BaseHTTPRequestHandler):
    peer: Peer

    def do_GET(self) -> None:
        self.peer.seen.append((self.path, dict(self.headers)))
        route = self.peer.routes.get(urlsplit(self.path).path, reply(404, b"no such image", "text/plain"))
        try:
            route(self)
        except (BrokenPipeError, ConnectionResetError):
            self.peer.hung_up.set()
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the tests say what matters."""


def reply(status: int, body: bytes = b"", content_type: str | None = "image/png", **headers: str) -> Route:
    """A route answering status with body, content_type and extra headers."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        if content_type is not None:
            handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(body)

    return route


def redirect(location: str, status: int = 302) -> Route:
    """A route sending the client to location."""
    return reply(status, b"", "text/plain", Location=location)


def endless(
    framing: str,
    declared_length: int | None = None,
    block: bytes = b"x" * 65536,
    pause_s: float = 0.0,
    silent_after: int | None = None,
) -> Route:
    """A route making up to a gigabyte lazily, chunked or until close; optionally slow, or silent midway."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        if framing == "chunked":
            handler.protocol_version = "HTTP/1.1"  # chunked framing needs 1.1
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        if framing == "chunked":
            handler.send_header("Transfer-Encoding", "chunked")
        if declared_length is not None:
            handler.send_header("Content-Length", str(declared_length))
        handler.end_headers()
        handler.close_connection = True
        if framing == "chunked":  # one huge chunk: the client cannot wait for "the end of the chunk"
            handler.wfile.write(b"%x\r\n" % GIGABYTE)
        stopping = handler.peer.stopping  # type: ignore[attr-defined]
        for sent in range(1, GIGABYTE // len(block) + 1):
            handler.wfile.write(block)
            handler.wfile.flush()
            if sent == silent_after:
                stopping.wait(30)
            if stopping.is_set() or (pause_s and stopping.wait(pause_s)):
                return

    return route


def stalls(seconds: float) -> Route:
    """A route that says nothing for seconds (or until teardown), then serves an image."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.peer.stopping.wait(seconds)  # type: ignore[attr-defined]
        reply(200, PNG)(handler)

    return route


@pytest.fixture
def peer() -> Iterator[Peer]:
    """A fresh loopback image host."""
    server = Peer()
    yield server
    server.close()


def fetch_local(url: str, **options: object) -> http.Fetched:
    """fetch() as the tests mostly need it: loopback allowed, a 1 MB cap."""
    options = {"allow_private": True, "max_bytes": 1_000_000, **options}
    return http.fetch(url, **options)  # type: ignore[arg-type]


# --- the happy path ------------------------------------------------------------------------------------


def test_a_png_arrives_intact_with_its_type(peer: Peer) -> None:
    """A shop serves a PNG; we get its exact bytes, its media type and the URL we ended at."""
    peer.routes["/coffee.png"] = reply(200, PNG, "image/png")
    fetched = fetch_local(peer.url("/coffee.png"))
    assert fetched == http.Fetched(data=PNG, content_type="image/png", url=peer.url("/coffee.png"))


@pytest.mark.parametrize(
    ("sent", "reported"),
    [("image/JPEG; charset=binary", "image/jpeg"), ("application/octet-stream", "application/octet-stream"),
     (None, "application/octet-stream")],
)
def test_generic_or_missing_types_are_accepted(peer: Peer, sent: str | None, reported: str) -> None:
    """A server that labels the image loosely, or not at all, is still believed: imaging sniffs the bytes."""
    peer.routes["/a"] = reply(200, PNG, sent)
    assert fetch_local(peer.url("/a")).content_type == reported


def test_requests_introduce_themselves_and_ask_for_images(peer: Peer) -> None:
    """Every request names our service and asks for an image, uncompressed."""
    peer.routes["/a.png"] = reply(200, PNG)
    fetch_local(peer.url("/a.png"))
    _, headers = peer.seen[0]
    assert headers["User-Agent"] == "catalog-service/0.1"
    assert headers["Accept"] == "image/*"
    assert headers["Accept-Encoding"] == "identity"


def test_environment_proxies_are_ignored(peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy set in the environment does not reroute fetches to a place we did not check."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    peer.routes["/a.png"] = reply(200, PNG)
    assert fetch_local(peer.url("/a.png")).data == PNG


# --- what the server says --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [(404, http.FetchNotFound, False), (410, http.FetchNotFound, False), (500, http.FetchUpstream, True),
     (503, http.FetchUpstream, True), (429, http.FetchUpstream, True), (403, http.FetchUpstream, False),
     (400, http.FetchUpstream, False), (304, http.FetchUpstream, False)],
)
def test_status_codes_become_errors_that_know_whether_to_retry(
    peer: Peer, status: int, error: type[http.FetchError], retryable: bool
) -> None:
    """Gone images are not found, server failures and throttling retry, refusals do not."""
    peer.routes["/a.png"] = reply(status, b"nope", "text/plain")
    with pytest.raises(error) as caught:
        fetch_local(peer.url("/a.png"))
    assert caught.value.retryable is retryable
    assert str(status) in str(caught.value)


def test_a_web_page_is_not_an_image(peer: Peer) -> None:
    """A link to the product page instead of the photo is refused and the merchant told what to link."""
    peer.routes["/product"] = reply(200, b"<html>buy now</html>", "text/html; charset=utf-8")
    with pytest.raises(http.FetchBadContent, match="text/html.*link the image file"):
        fetch_local(peer.url("/product"))


def test_messages_leave_out_the_query_where_signed_urls_keep_tokens(peer: Peer) -> None:
    """An error names the host and path but never the signature in the query string."""
    with pytest.raises(http.FetchNotFound) as caught:
        fetch_local(peer.url("/gone.png?X-Amz-Signature=s3cr3t&token=t0k3n"))
    assert "/gone.png" in str(caught.value)
    assert "s3cr3t" not in str(caught.value) and "t0k3n" not in str(caught.value)


def test_errors_keep_their_retry_flag_across_processes() -> None:
    """An error pickled into a job record comes back with the same message and retry decision."""
    error = pickle.loads(pickle.dumps(http.FetchUpstream("example.com answered 403", retryable=False)))
    assert (str(error), error.retryable) == ("example.com answered 403", False)


def test_connection_refused_is_retryable() -> None:
    """Nobody listening on the port is an upstream failure worth retrying."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(http.FetchUpstream) as caught:
        fetch_local(f"http://127.0.0.1:{port}/a.png")
    assert caught.value.retryable is True


# --- size -----------------------------------------------------------------------------------------------


def test_an_image_exactly_at_the_cap_is_accepted(peer: Peer) -> None:
    """The cap is inclusive: max_bytes bytes arrive, one more would not."""
    peer.routes["/a.png"] = reply(200, PNG)
    assert fetch_local(peer.url("/a.png"), max_bytes=len(PNG)).data == PNG
    with pytest.raises(http.FetchTooLarge):
        fetch_local(peer.url("/a.png"), max_bytes=len(PNG) - 1)


def test_a_declared_length_over_the_cap_is_refused_before_reading(peer: Peer) -> None:
    """A server announcing a gigabyte is refused on its headers and sees us hang up."""
    peer.routes["/huge.png"] = endless("until-close", declared_length=GIGABYTE)
    with pytest.raises(http.FetchTooLarge, match=f"{GIGABYTE} bytes"):
        fetch_local(peer.url("/huge.png"))
    assert peer.hung_up.wait(5)


@pytest.mark.parametrize("framing", ["chunked", "until-close"])
def test_an_endless_body_without_length_is_cut_off_at_the_cap(peer: Peer, framing: str) -> None:
    """A server streaming a gigabyte with no Content-Length is cut off past the cap, not read to the end."""
    peer.routes["/endless.png"] = endless(framing)
    started = time.monotonic()
    with pytest.raises(http.FetchTooLarge):
        fetch_local(peer.url("/endless.png"), max_bytes=1_000_000)
    assert time.monotonic() - started < 5
    assert peer.hung_up.wait(5)


# --- time -----------------------------------------------------------------------------------------------


def test_a_server_that_never_answers_times_out(peer: Peer) -> None:
    """Silence longer than the read timeout is a retryable timeout."""
    peer.routes["/slow.png"] = stalls(5)
    started = time.monotonic()
    with pytest.raises(http.FetchTimeout) as caught:
        fetch_local(peer.url("/slow.png"), read_timeout_s=0.5)
    assert caught.value.retryable is True
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("framing", ["chunked", "until-close"])
def test_a_trickling_server_hits_the_total_deadline(peer: Peer, framing: str) -> None:
    """A byte every 0.2 s never trips the read timeout, but the whole download has a deadline."""
    peer.routes["/drip.png"] = endless(framing, pause_s=0.2, block=b"x")
    started = time.monotonic()
    with pytest.raises(http.FetchTimeout):
        fetch_local(peer.url("/drip.png"), total_timeout_s=1)
    assert time.monotonic() - started < 5


def test_a_server_that_falls_silent_midway_is_cut_off_near_the_deadline(peer: Peer) -> None:
    """A few bytes, then silence: the socket waits no longer than the 1 s deadline allows, not 20 s."""
    peer.routes["/drip.png"] = endless("until-close", block=b"x", pause_s=0.2, silent_after=3)
    started = time.monotonic()
    with pytest.raises(http.FetchTimeout):
        fetch_local(peer.url("/drip.png"), read_timeout_s=20, total_timeout_s=1)
    assert time.monotonic() - started < 5


def test_a_server_that_falls_silent_just_before_the_deadline_is_cut_off_at_it(peer: Peer) -> None:
    """Silence from 2.5 s into a 3 s budget: the download ends at 3 s, not when the socket's 3 s timeout runs out."""
    peer.routes["/drip.png"] = endless("until-close", block=b"x", pause_s=0.25, silent_after=10)
    started = time.monotonic()
    with pytest.raises(http.FetchTimeout):
        fetch_local(peer.url("/drip.png"), read_timeout_s=20, total_timeout_s=3)
    assert time.monotonic() - started < 3.8


# --- redirects ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("hops", "allowed"), [(5, True), (6, False)])
def test_redirect_chains_are_followed_up_to_the_limit(peer: Peer, hops: int, allowed: bool) -> None:
    """With max_redirects=5, five redirects still arrive at the image; a sixth is refused."""
    for n in range(hops):
        peer.routes[f"/hop/{n}"] = redirect(peer.url(f"/hop/{n + 1}"))
    peer.routes[f"/hop/{hops}"] = reply(200, PNG)
    if allowed:
        assert fetch_local(peer.url("/hop/0"), max_redirects=5).url == peer.url(f"/hop/{hops}")
    else:
        with pytest.raises(http.FetchBlocked, match="over 5 redirects"):
            fetch_local(peer.url("/hop/0"), max_redirects=5)
        assert len(peer.seen) == 6


def test_a_relative_redirect_is_resolved_against_the_current_url(peer: Peer) -> None:
    """Location: ../images/a.png from /shop/products/a.png leads to /shop/images/a.png."""
    peer.routes["/shop/products/a.png"] = redirect("../images/a.png", status=301)
    peer.routes["/shop/images/a.png"] = reply(200, PNG)
    fetched = fetch_local(peer.url("/shop/products/a.png"))
    assert (fetched.url, fetched.data) == (peer.url("/shop/images/a.png"), PNG)


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/secret",
        "http://localhost:{port}/secret",
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1:{port}/a.png",
    ],
)
def test_every_redirect_hop_is_checked_again(
    peer: Peer, monkeypatch: pytest.MonkeyPatch, target: str
) -> None:
    """A public host redirecting inward is refused at the redirect; the inner host never hears from us."""
    # Pretend our loopback server is the public internet: 127.0.0.1 is allowed, every other address is not.
    monkeypatch.setattr(http, "_is_forbidden", lambda ip: str(ip) != "127.0.0.1")
    peer.routes["/a.png"] = redirect(target.format(port=peer.port))
    with pytest.raises(http.FetchBlocked):
        http.fetch(peer.url("/a.png"), max_bytes=1_000_000)
    assert [path for path, _ in peer.seen] == ["/a.png"]


def test_redirects_to_loopback_are_fine_when_private_addresses_are_allowed(peer: Peer) -> None:
    """With allow_private (development), a redirect from one loopback name to another is followed."""
    peer.routes["/a.png"] = redirect(peer.url("/b.png", host="localhost"))
    peer.routes["/b.png"] = reply(200, PNG)
    assert fetch_local(peer.url("/a.png")).url == peer.url("/b.png", host="localhost")


# --- addresses ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.1", "2130706433"])
def test_a_loopback_url_is_refused_before_any_connection(peer: Peer, host: str) -> None:
    """Loopback, however spelled, is blocked by default and the server never sees a request."""
    with pytest.raises(http.FetchBlocked, match="private or internal|internal name"):
        http.fetch(peer.url("/a.png", host=host), max_bytes=1_000_000)
    assert peer.seen == []


def test_a_name_that_resolves_to_loopback_is_refused_at_resolution() -> None:
    """The address a name resolves to is checked, not just the name: 'localhost' lands on 127.0.0.1."""
    with pytest.raises(http.FetchBlocked, match="points to a private"):
        http._resolve_checked("localhost", 80, allow_private=False)
    assert http._resolve_checked("localhost", 80, allow_private=True) == "127.0.0.1"


def test_an_unknown_host_name_is_a_permanent_upstream_error() -> None:
    """A typo in the host name will not fix itself, so it is not retried."""
    with pytest.raises(http.FetchUpstream, match="no server named") as caught:
        http.fetch("http://no-such-shop.invalid/a.png", max_bytes=1000)
    assert caught.value.retryable is False


def test_the_connection_is_pinned_but_speaks_the_original_name(peer: Peer) -> None:
    """We connect to the address we checked, yet the server sees the Host header the shop's URL named."""
    peer.routes["/a.png"] = reply(200, PNG)
    fetched = fetch_local(peer.url("/a.png", host="localhost"))
    assert fetched.url == peer.url("/a.png", host="localhost")
    assert peer.seen[0][1]["Host"] == f"localhost:{peer.port}"


def test_dns_rebinding_cannot_move_the_connection(peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name answering 'public' to our check and 'internal' later is looked up once and used as checked."""
    # Pretend 127.0.0.1 is public and rebind.test a hostile name whose later answers point at 127.0.0.2.
    monkeypatch.setattr(http, "_is_forbidden", lambda ip: str(ip) != "127.0.0.1")
    real_getaddrinfo, lookups = socket.getaddrinfo, []

    def rebinding_dns(host: str, port: object, *args: object, **kwargs: object) -> list:
        if host != "rebind.test":
            return real_getaddrinfo(host, port, *args, **kwargs)  # type: ignore[arg-type]
        lookups.append(host)
        answer = "127.0.0.1" if len(lookups) == 1 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (answer, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_dns)
    peer.routes["/a.png"] = reply(200, PNG)
    assert http.fetch(peer.url("/a.png", host="rebind.test"), max_bytes=1_000_000).data == PNG
    assert lookups == ["rebind.test"]
    assert peer.seen[0][1]["Host"] == f"rebind.test:{peer.port}"


@pytest.mark.parametrize(
    "url",
    [
        # private, shared, link-local (cloud metadata), loopback, unique-local, IPv4-mapped and NAT64 loopback
        "http://10.0.0.1/a.png", "http://172.16.0.1/a.png", "http://192.168.1.1/a.png", "http://100.64.0.1/",
        "http://169.254.169.254/", "http://[fe80::1]/", "http://[::1]/", "http://[fd00::1]/",
        "http://[::ffff:127.0.0.1]/", "http://[64:ff9b::a00:1]/", "http://[fec0::1]/",
        # unspecified, multicast, reserved
        "http://0.0.0.0/", "http://224.0.0.1/", "http://240.0.0.1/",
        # internal names
        "http://localhost/", "http://LOCALHOST./", "http://shop.localhost/",
        "http://metadata.google.internal/",
        # credentials, other schemes, no host, impossible port
        "http://user:pw@example.com/a.png", "ftp://example.com/a.png", "file:///etc/passwd",
        "gopher://example.com/", "//example.com/a.png", "http:///a.png", "http://example.com:99999/a.png",
    ],
)
def test_check_url_refuses_unsafe_urls(url: str) -> None:
    """Internal addresses, internal names, credentials and non-web schemes are refused without DNS."""
    with pytest.raises(http.FetchBlocked):
        http.check_url(url)


@pytest.mark.parametrize(
    "url",
    ["http://8.8.8.8/a.png", "https://[2001:4860:4860::8888]/a.png", "https://cdn.shop.example/a.png?v=2"],
)
def test_check_url_accepts_public_urls(url: str) -> None:
    """Public address literals and ordinary host names pass the shape check (check_url never connects)."""
    http.check_url(url)


def test_private_urls_pass_when_allowed_but_schemes_and_credentials_never_do() -> None:
    """allow_private opens internal hosts for development, not other schemes or embedded passwords."""
    http.check_url("http://127.0.0.1/a.png", allow_private=True)
    for url in ("file:///etc/passwd", "http://user:pw@127.0.0.1/a.png"):
        with pytest.raises(http.FetchBlocked):
            http.check_url(url, allow_private=True)


def test_a_password_in_the_url_is_not_repeated_in_the_message() -> None:
    """The refusal says credentials are not allowed without echoing them."""
    with pytest.raises(http.FetchBlocked, match="user name or password") as caught:
        http.check_url("https://admin:hunter2@cdn.shop.example/a.png")
    assert "hunter2" not in str(caught.value) and "admin" not in str(caught.value)


# --- TLS ------------------------------------------------------------------------------------------------


def _self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for name (and nothing else), written as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    key_file.write_bytes(key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    return cert_file, key_file


@pytest.mark.parametrize(("cert_name", "works"), [("localhost", True), ("other.example", False)])
def test_https_is_pinned_yet_verified_for_the_url_host(tmp_path: Path, cert_name: str, works: bool) -> None:
    """Over TLS we connect to 127.0.0.1 yet check the certificate for 'localhost'; another name is refused."""
    cert_file, key_file = _self_signed(tmp_path, cert_name)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert_file, key_file)
    server = Peer(tls=tls)
    server.routes["/a.png"] = reply(200, PNG)
    try:
        with http.make_session() as session:
            session.verify = str(cert_file)  # trust exactly this certificate
            url = server.url("/a.png", host="localhost", scheme="https")
            if works:
                assert http.fetch(url, max_bytes=1_000_000, allow_private=True, session=session).data == PNG
            else:
                with pytest.raises(http.FetchUpstream, match="certificate could not be verified") as caught:
                    http.fetch(url, max_bytes=1_000_000, allow_private=True, session=session)
                assert caught.value.retryable is False
    finally:
        server.close()
