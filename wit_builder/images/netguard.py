"""Never fetch from private networks: a urllib opener that connects only to public
addresses, unless a range is explicitly allowed.

img2dataset fetches every image with ``urllib.request.urlopen``, which uses the opener
installed in its process; `install` puts this one there in every download worker. The
check is made on the address a connection really goes to, not on the URL's spelling:

* the host is resolved once (`socket.getaddrinfo`), every address it resolves to is
  checked, and the socket connects to a checked address (no second lookup that a DNS
  answer could change); the peer address of the connected socket is checked again;
* so a name that resolves to 127.0.0.1, numeric spellings (``http://2130706433/``,
  ``http://0x7f.1/``), IPv4-mapped IPv6 (``::ffff:127.0.0.1``) and redirects (each hop
  opens a new connection through the same code) are all caught;
* refused: every address that is not globally routable (loopback, private, link-local,
  shared, reserved, documentation, unspecified) and multicast, IPv4 and IPv6, unless it
  lies in an allowed network (``--allow-network CIDR``);
* only http and https: ``file:``, ``ftp:`` and ``data:`` URLs are refused; proxies from
  the environment are not used (through a proxy the real destination cannot be checked).

A refused connection raises `BlockedAddress`, whose message starts with
``blocked_address`` (or ``blocked_scheme``), the reason the failure is counted under.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import http.client
import ipaddress
import itertools
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedAddress(OSError):
    """A connection the guard refused; the message starts with the drop reason."""


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Allowed networks from CIDR strings (``127.0.0.1/32``); `ValueError` if malformed."""
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _unmapped(ip: Address) -> Address:
    """The IPv4 address inside an IPv4-mapped or 6to4/NAT64-style IPv6 address."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_refused(ip: Address, allowed: tuple[Network, ...]) -> bool:
    """True if `ip` may not be connected to (see module docstring)."""
    ip = _unmapped(ip)
    if any(ip in net for net in allowed if net.version == ip.version):
        return False
    return ip.is_multicast or not ip.is_global


def guarded_connection(allowed: tuple[Network, ...]) -> Any:
    """A drop-in for `socket.create_connection` that only connects to permitted
    addresses (see module docstring)."""

    def create_connection(address: tuple[str, int], timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,
                          source_address: Any = None, **_: Any) -> socket.socket:
        host, port = address
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        permitted = [i for i in infos if not is_refused(ipaddress.ip_address(
            i[4][0].split("%")[0]), allowed)]
        if not permitted:
            shown = ", ".join(sorted({i[4][0] for i in infos}))
            raise BlockedAddress(f"blocked_address: {host} is {shown}, not a public address")
        error: OSError | None = None
        for family, kind, proto, _, sockaddr in permitted:
            sock = socket.socket(family, kind, proto)
            try:
                if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
            except OSError as e:
                sock.close()
                error = e
                continue
            peer = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
            if is_refused(peer, allowed):  # never happens unless the resolver lied
                sock.close()
                raise BlockedAddress(f"blocked_address: connected to {peer}")
            return sock
        assert error is not None
        raise error

    return create_connection


@dataclass(frozen=True)
class Limits:
    """Bounds of one request: `deadline` seconds for all of it (connect, headers and
    body: a server dripping a byte a second cannot hold a thread), `max_bytes` of body."""

    deadline: float | None = None
    max_bytes: int | None = None


class _Watchdog:
    """One thread per process that expires request deadlines in time order (a thread per
    request would pile up: a 404 is dropped without its body ever being read), and the
    set of requests still open (`expire_all`). It holds the watches weakly: a finished
    request's watch goes with its response."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, weakref.ref]] = []
        self.open: weakref.WeakSet[Watch] = weakref.WeakSet()  # requests not done yet
        self.cond = threading.Condition()
        self.pid, self.count = 0, itertools.count()

    def track(self, watch: Watch, when: float | None) -> None:
        """Hold `watch` while its request is open; expire it at `when` (None: never)."""
        with self.cond:
            if self.pid != os.getpid():  # first use in this (maybe forked) process
                self.pid, self.heap, self.open = os.getpid(), [], weakref.WeakSet()
                threading.Thread(target=self._run, daemon=True).start()
            self.open.add(watch)
            if when is not None:
                heapq.heappush(self.heap, (when, next(self.count), weakref.ref(watch)))
                self.cond.notify()

    def release(self, watch: Watch) -> None:
        with self.cond:
            self.open.discard(watch)

    def _run(self) -> None:
        while True:
            with self.cond:
                while not self.heap or self.heap[0][0] > time.monotonic():
                    self.cond.wait(self.heap[0][0] - time.monotonic() if self.heap else None)
                _, _, ref = heapq.heappop(self.heap)
            watch = ref()
            if watch is not None and not watch.finished:
                watch.expire()

    def expire_all(self, message: str) -> int:
        """Cut off every request of this process still open (the shard watchdog); how
        many were."""
        with self.cond:
            watches = list(self.open) if self.pid == os.getpid() else []
        open_ = [w for w in watches if not w.finished and not w.expired]
        for watch in open_:
            watch.expire(message)
        return len(open_)


_WATCHDOG = _Watchdog()


class Watch:
    """One request's deadline: when it passes, the socket is shut down, so a blocked read
    returns at once; `expired` tells the reader why."""

    def __init__(self, deadline: float | None) -> None:
        self.expired = self.finished = False
        self.sock: socket.socket | None = None
        self.message = (f"timed out: the whole-request deadline of {deadline:g} s passed"
                        if deadline else "timed out")
        _WATCHDOG.track(self, time.monotonic() + deadline if deadline else None)

    def watch(self, sock: socket.socket) -> None:
        self.sock = sock
        if self.expired:
            self.expire()

    def expire(self, message: str | None = None) -> None:
        self.message = message or self.message
        self.expired = True
        with contextlib.suppress(OSError, AttributeError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def done(self) -> None:
        self.finished, self.sock = True, None
        _WATCHDOG.release(self)


def _connection_classes(allowed: tuple[Network, ...]) -> tuple[type, type]:
    create = guarded_connection(allowed)

    # http.client sets `_create_connection` per instance in __init__, so it is replaced
    # there (a class attribute would be shadowed).
    class Guarded:
        """What both connection classes add: the guard, and the request's deadline."""

        def __init__(self, *args: Any, watch: Watch | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._create_connection, self.watch = create, watch

        def connect(self) -> None:
            super().connect()
            if self.watch is not None:
                self.watch.watch(self.sock)

    class GuardedHTTP(Guarded, http.client.HTTPConnection):
        pass

    class GuardedHTTPS(Guarded, http.client.HTTPSConnection):
        pass

    return GuardedHTTP, GuardedHTTPS


def expire_all(message: str) -> int:
    """Cut off every request of this process still open, its failure saying `message`
    (a ``timed out`` message: counted as ``timeout``); how many were."""
    return _WATCHDOG.expire_all(message)


def limited_open(do_open: Any, connection: type, req: urllib.request.Request,
                 limits: Limits, **kw: Any) -> Any:
    """`do_open` under `limits`: the response's ``read()`` is bounded (`limited_read`)."""
    watch = Watch(limits.deadline)
    try:
        response = do_open(functools.partial(connection, watch=watch), req, **kw)
    except (OSError, http.client.HTTPException):
        watch.done()
        if watch.expired:
            raise urllib.error.URLError(TimeoutError(watch.message)) from None
        raise
    response.read = limited_read(response, watch, limits)
    return response


def limited_read(response: Any, watch: Watch, limits: Limits) -> Any:
    """A ``read`` for `response` that refuses a body over ``max_bytes`` (declared or
    streamed) and stops at the deadline."""
    original = response.read

    def read(amt: int | None = None) -> bytes:
        if amt is not None:
            return original(amt)
        cap = limits.max_bytes
        declared = response.headers.get("Content-Length", "")
        try:
            if cap and declared.isdigit() and int(declared) > cap:
                raise TooLarge(f"too_large: Content-Length {declared} is over {cap} bytes")
            chunks, total = [], 0
            while chunk := original(1 << 16):
                total += len(chunk)
                if cap and total > cap:
                    raise TooLarge(f"too_large: the body is over {cap} bytes")
                chunks.append(chunk)
        except (OSError, http.client.HTTPException):
            if watch.expired:
                raise TimeoutError(watch.message) from None
            raise
        finally:
            watch.done()
        if watch.expired:
            raise TimeoutError(watch.message)
        return b"".join(chunks)

    return read


class TooLarge(OSError):
    """A response body over the byte cap."""


def _refuse_scheme(self: Any, req: urllib.request.Request) -> None:
    raise urllib.request.URLError(BlockedAddress(
        f"blocked_scheme: {req.type} URLs are not fetched"))


class _NoFile(urllib.request.FileHandler):
    file_open = _refuse_scheme


class _NoFTP(urllib.request.FTPHandler):
    ftp_open = _refuse_scheme


class _NoData(urllib.request.DataHandler):
    data_open = _refuse_scheme


def browser_url(url: str) -> str:
    """`url` as a browser sends it: the path and query percent-encoded as UTF-8 (spaces,
    non-ASCII), the host in IDNA; a URL already encoded is left as it is."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc
    if not host.isascii():
        with contextlib.suppress(UnicodeError):
            host = host.encode("idna").decode("ascii")
    path = urllib.parse.quote(parts.path, safe="/%:@!$&'()*+,;=~")
    query = urllib.parse.quote(parts.query, safe="/%:@!$&'()*+,;=~?")
    return urllib.parse.urlunsplit((parts.scheme, host, path, query, parts.fragment))


class _BrowserUrls(urllib.request.BaseHandler):
    """Requests go out with their URL encoded as browsers do (`browser_url`)."""

    def http_request(self, req: urllib.request.Request) -> urllib.request.Request:
        encoded = browser_url(req.full_url)
        if encoded != req.full_url:
            req.full_url = encoded
        return req

    https_request = http_request


def build_opener(allowed: tuple[Network, ...] = (), limits: Limits | None = None
                 ) -> urllib.request.OpenerDirector:
    """A urllib opener that fetches http(s) from permitted addresses only, within
    `limits`, with URLs encoded as browsers do."""
    http_cls, https_cls = _connection_classes(allowed)
    limits = limits or Limits()

    class Http(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> Any:
            return limited_open(self.do_open, http_cls, req, limits)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> Any:
            return limited_open(self.do_open, https_cls, req, limits, context=self._context)

    return urllib.request.build_opener(urllib.request.ProxyHandler({}), Http(), Https(),
                                       _NoFile(), _NoFTP(), _NoData(), _BrowserUrls())


def install(allowed_cidrs: Iterable[str] = (), limits: Limits | None = None) -> None:
    """Make every ``urllib.request.urlopen`` of this process go through the guard."""
    urllib.request.install_opener(build_opener(parse_networks(allowed_cidrs), limits))
