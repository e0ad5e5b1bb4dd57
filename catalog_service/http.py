"""The only door for untrusted URLs: fetch an image a shop pointed us at, refusing anything unsafe.

Every hop is checked (scheme, credentials, host name, every resolved address), the connection is
pinned to the address we checked, redirects are followed by hand, and the body is streamed under a
byte cap and a total deadline. Failures are FetchError subclasses whose message a merchant can act on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import http.cookiejar
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import SplitResult, urljoin, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

USER_AGENT = "catalog-service/0.1"
READ_CHUNK_BYTES = 64 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_RETRYABLE_4XX = frozenset({408, 429})  # the server asks us to come back later
_BLOCKED_NAMES = frozenset({"localhost", "metadata.google.internal"})
_SHARED_NET = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT; is_private misses it on 3.11
_NAT64_NET = ipaddress.ip_network("64:ff9b::/96")  # reaches its embedded IPv4 address via our gateway
_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(Exception):
    """A source image could not be fetched; the message says what happened and what to do."""

    retryable: bool = False


class FetchBlocked(FetchError):
    """The URL, or a redirect it led to, is not one we are willing to fetch."""


class FetchTimeout(FetchError):
    """The server was too slow to connect, answer or finish sending."""

    retryable = True


class FetchTooLarge(FetchError):
    """The image is bigger than the byte cap."""


class FetchNotFound(FetchError):
    """The server says the image does not exist (404 or 410)."""


class FetchUpstream(FetchError):
    """The server failed or refused; retryable depends on why."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class FetchBadContent(FetchError):
    """The server answered with something that says it is not an image."""


@dataclasses.dataclass(frozen=True)
class Fetched:
    """A downloaded body, its media type (application/octet-stream when unstated) and final URL."""

    data: bytes
    content_type: str
    url: str


class _PinnedAdapter(HTTPAdapter):
    """Connects to the address in the URL; for https, names and verifies the host in the Host header."""

    # fetch() resolves and checks the host itself, then sends to a URL whose host is the checked IP and
    # carries the real name in the Host header. Were we to hand requests the name, urllib3 would resolve
    # it again and a DNS server answering "public" to us and "127.0.0.1" to urllib3 (rebinding) would
    # win. TLS must still present and verify the real name: server_hostname does both (SNI and the
    # certificate check), and is part of urllib3's pool key, so pools for different names never mix.
    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[Any, Any]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        host_header = request.headers.get("Host")
        if host_header and host_params["scheme"] == "https":
            # urllib3 takes server_hostname as a pool keyword; requests' stubs do not list it.
            extra: dict[str, Any] = {"server_hostname": urlsplit(f"//{host_header}").hostname}
            return host_params, {**pool_kwargs, **extra}
        return host_params, pool_kwargs


def make_session() -> requests.Session:
    """A pinning session for fetch(): no environment proxies, no cookies kept, image-only Accept."""
    session = requests.Session()
    session.trust_env = False  # HTTP(S)_PROXY would send untrusted fetches somewhere we did not check
    session.headers.update({"User-Agent": USER_AGENT, "Accept": "image/*", "Accept-Encoding": "identity"})
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))  # shops share it
    adapter = _PinnedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def check_url(url: str, *, allow_private: bool = False) -> None:
    """Refuse a URL by its shape alone (scheme, credentials, host name or address literal); no DNS."""
    _parse(url, allow_private)


def fetch(
    url: str,
    *,
    max_bytes: int,
    connect_timeout_s: float = 5.0,
    read_timeout_s: float = 20.0,
    total_timeout_s: float = 60.0,
    allow_private: bool = False,
    max_redirects: int = 5,
    session: requests.Session | None = None,
) -> Fetched:
    """Download an image from an untrusted URL (reuse a make_session() session) within cap and deadline."""
    deadline, start = time.monotonic() + total_timeout_s, url
    own_session = session is None
    session = make_session() if session is None else session
    try:
        for _hop in range(max_redirects + 1):
            parts = _parse(url, allow_private)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = _resolve_checked(parts.hostname or "", port, allow_private)
            pinned = urlunsplit((parts.scheme, _hostport(address, port), parts.path or "/", parts.query, ""))
            remaining = _remaining(deadline, url)
            with _failures_explained(url):
                response = session.get(
                    pinned,
                    headers={"Host": _hostport(parts.hostname or "", parts.port)},
                    timeout=(min(connect_timeout_s, remaining), min(read_timeout_s, remaining)),
                    allow_redirects=False,
                    stream=True,
                )
                with contextlib.closing(response):
                    location = response.headers.get("Location")
                    if response.status_code not in _REDIRECT_STATUSES or not location:
                        return _accept(response, url, max_bytes, deadline)
            url = urljoin(url, location)
        raise FetchBlocked(f"{_redact(start)}: over {max_redirects} redirects; send the image's own link")
    finally:
        if own_session:
            session.close()


def post(
    url: str,
    body: bytes,
    *,
    headers: dict[str, str],
    connect_timeout_s: float = 5.0,
    read_timeout_s: float = 20.0,
    allow_private: bool = False,
    session: requests.Session | None = None,
) -> tuple[int, str]:
    """POST to an untrusted URL (a merchant's callback) through the same checks and pinning as fetch().

    Redirects are not followed: a callback that moves must be reconfigured. Returns the status and up to
    500 characters of the answer, for the merchant to read.
    """
    parts = _parse(url, allow_private)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = _resolve_checked(parts.hostname or "", port, allow_private)
    pinned = urlunsplit((parts.scheme, _hostport(address, port), parts.path or "/", parts.query, ""))
    own_session = session is None
    session = make_session() if session is None else session
    try:
        with _failures_explained(url):
            response = session.post(
                pinned, data=body, headers={**headers, "Host": _hostport(parts.hostname or "", parts.port)},
                timeout=(connect_timeout_s, read_timeout_s), allow_redirects=False, stream=True,
            )
            with contextlib.closing(response):
                answer = response.raw.read(2000, decode_content=False) or b""
                return response.status_code, answer.decode("utf-8", "replace")[:500]
    finally:
        if own_session:
            session.close()


def _parse(url: str, allow_private: bool) -> SplitResult:
    """Split a URL and refuse bad schemes, credentials, missing or internal hosts."""
    try:
        parts = urlsplit(url.strip())
        _ = parts.port  # raises ValueError on a port that is not a number in range
    except ValueError:
        raise FetchBlocked(f"{_redact(url)} is not a valid web address; check the image link") from None
    if parts.scheme not in ("http", "https"):
        raise FetchBlocked(f"only http and https image links are accepted (got {parts.scheme or 'none'}:)")
    if parts.username is not None or parts.password is not None:
        raise FetchBlocked(f"{_redact(url)} carries a user name or password; send a public link instead")
    try:  # the ASCII (IDNA) form is what DNS, the Host header and TLS need
        ascii_host = (parts.hostname or "").encode("idna").decode("ascii")
    except UnicodeError:
        raise FetchBlocked(f"{_redact(url)} has an invalid host name; check the image link") from None
    parts = parts._replace(netloc=_hostport(ascii_host, parts.port))
    host = ascii_host.rstrip(".")
    if not host:
        raise FetchBlocked(f"{_redact(url)} has no host name; send a full image link")
    if allow_private:
        return parts
    if host in _BLOCKED_NAMES or host.endswith(".localhost"):
        raise FetchBlocked(f"{host} is an internal name; send a public image link")
    with contextlib.suppress(ValueError):
        if _is_forbidden(ipaddress.ip_address(host)):
            raise FetchBlocked(f"{host} is a private or internal address; send a public image link")
    return parts


def _resolve_checked(host: str, port: int, allow_private: bool) -> str:
    """Resolve host and return the address to connect to, refusing if ANY address is internal."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        temporary = getattr(exc, "errno", None) == socket.EAI_AGAIN
        raise FetchUpstream(f"no server named {host}; check the link", retryable=temporary) from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not allow_private:
        for address in addresses:
            if _is_forbidden(address):
                raise FetchBlocked(f"{host} points to a private or internal address; send a public link")
    return str(addresses[0])  # getaddrinfo's order already puts the reachable family first (RFC 6724)


def _is_forbidden(ip: _IPAddress) -> bool:
    """True for any address that is not plainly on the public internet."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _is_forbidden(ip.ipv4_mapped)
        if ip in _NAT64_NET and _is_forbidden(ipaddress.IPv4Address(int(ip) & 0xFFFF_FFFF)):
            return True
        if ip.is_site_local:
            return True
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local  # includes 169.254.169.254, the cloud metadata service
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in _SHARED_NET
    )


def _accept(response: requests.Response, url: str, max_bytes: int, deadline: float) -> Fetched:
    """Check status, type and declared size, then read the body under the cap and deadline."""
    status, where = response.status_code, _redact(url)
    if status in (404, 410):
        raise FetchNotFound(f"{where} answered {status}: the image is gone; update the product's image link")
    if status >= 500 or status in _RETRYABLE_4XX:
        message = f"{where} answered {status}; the server is failing"
        raise FetchUpstream(message, retryable=True)
    if not 200 <= status < 300:
        raise FetchUpstream(f"{where} answered {status}; make sure the image is public", retryable=False)
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    content_type = content_type or "application/octet-stream"
    if not (content_type.startswith("image/") or content_type == "application/octet-stream"):
        raise FetchBadContent(f"{where} is {content_type}, not an image; link the image file itself")
    declared = response.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchTooLarge(f"{where} is {declared} bytes, over the {max_bytes}-byte cap; use a smaller one")
    return Fetched(_read_capped(response, url, max_bytes, deadline), content_type, url)


def _read_capped(response: requests.Response, url: str, max_bytes: int, deadline: float) -> bytes:
    """Read the body one socket read at a time, stopping past max_bytes or at the deadline."""
    # Not iter_content: it blocks until a whole chunk has arrived, so a server sending a byte a second
    # would never be looked at between chunks. read1() returns after a single socket read. The socket's
    # own timeout was set when the request went out, so a server that falls silent just before the
    # deadline could hold a read that long again; a timer therefore shuts the socket down at the
    # deadline (urllib3's documented HTTPResponse.shutdown(), meant for unblocking a read from another
    # thread), which ends the blocked read at once.
    expired = threading.Event()

    def cut() -> None:
        expired.set()
        # The response may be closing in this same instant: then there is nothing left to unblock.
        with contextlib.suppress(ValueError, RuntimeError, OSError):
            response.raw.shutdown()

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), cut)
    timer.daemon = True
    timer.start()
    chunks, received = [], 0
    try:
        while chunk := response.raw.read1(READ_CHUNK_BYTES):
            received += len(chunk)
            if received > max_bytes:
                raise FetchTooLarge(f"{_redact(url)} is over the {max_bytes}-byte limit; use a smaller image")
            chunks.append(chunk)
            _remaining(deadline, url)
    except Exception:
        if expired.is_set():  # the cut socket, not the server, ended the read
            raise _too_slow(url) from None
        raise
    finally:
        timer.cancel()
    if expired.is_set():  # a shut-down socket reads as a clean end of the body: it is not one
        raise _too_slow(url)
    return b"".join(chunks)


def _remaining(deadline: float, url: str) -> float:
    """Seconds left before the deadline; FetchTimeout once it has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _too_slow(url)
    return remaining


def _too_slow(url: str) -> FetchTimeout:
    """The error of a download that ran out of time."""
    return FetchTimeout(f"{_redact(url)} took too long to download; check that it loads fast")


@contextlib.contextmanager
def _failures_explained(url: str) -> Iterator[None]:
    """Turn requests, urllib3 and socket failures into FetchErrors."""
    # `from None`: their messages and tracebacks quote the request path and query, where signed URLs
    # carry tokens, and jobs store what they raise.
    where = _redact(url)
    try:
        yield
    except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
        raise FetchTimeout(f"{where} did not answer in time; check that it loads fast") from None
    except (requests.exceptions.SSLError, urllib3.exceptions.SSLError, ssl.SSLError):
        message = f"{where}: its HTTPS certificate could not be verified; fix it or link another host"
        raise FetchUpstream(message, retryable=False) from None
    except ValueError:  # requests' InvalidURL/InvalidSchema/InvalidHeader, http.client.InvalidURL
        raise FetchBlocked(f"{where} is not a valid web address; check the image link") from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException, OSError):
        message = f"{where}: the connection failed or was cut off"
        raise FetchUpstream(message, retryable=True) from None


def _hostport(host: str, port: int | None) -> str:
    """host[:port], with brackets around an IPv6 address."""
    host = f"[{host}]" if ":" in host else host
    return host if port is None else f"{host}:{port}"


def _redact(url: str) -> str:
    """scheme://host[:port]/path, without credentials, query or fragment (signed URLs keep tokens there)."""
    try:
        parts = urlsplit(url)
        netloc = _hostport(parts.hostname or "", parts.port)
    except ValueError:
        return "the image link"
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")) or "the image link"
