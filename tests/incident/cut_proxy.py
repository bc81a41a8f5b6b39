"""A TCP proxy in front of the moto server that can cut one process's path to S3, as a network
partition does: once :meth:`CutProxy.cut` is called, bytes stop flowing both ways on the open
connections and new connections are accepted but never answered (a blackhole: the client waits for its
own timeouts, exactly as when a route disappears). :meth:`CutProxy.mend` closes the stalled connections
and forwards new ones again. Point one process's ``AWS_ENDPOINT_URL`` at :attr:`CutProxy.url`.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

__all__ = ["CutProxy", "cut_proxy"]


class CutProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._cut = threading.Event()
        self._closing = threading.Event()
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0  # connections accepted (forwarded or held)
        threading.Thread(target=self._accept, name="cut-proxy", daemon=True).start()

    @property
    def is_cut(self) -> bool:
        return self._cut.is_set()

    def cut(self) -> None:
        self._cut.set()

    def mend(self) -> None:
        with self._lock:
            held, self._held = self._held, []
        self._cut.clear()
        for sock in held:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self._closing.set()
        self.mend()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _hold(self, *socks: socket.socket) -> None:
        with self._lock:
            self._held.extend(socks)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            if self._cut.is_set():
                self._hold(client)  # accepted, never answered
                continue
            threading.Thread(target=self._pump, args=(client,), daemon=True).start()

    def _pump(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        pair = {client: server, server: client}
        try:
            while not self._closing.is_set():
                if self._cut.is_set():
                    self._hold(client, server)  # stalled: whatever was sent waits for ever
                    return
                readable, _, _ = select.select(list(pair), [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    if self._cut.is_set():
                        self._hold(client, server)
                        return
                    pair[sock].sendall(data)
        except OSError:
            pass
        for sock in (client, server):
            if sock not in self._held:
                with contextlib.suppress(OSError):
                    sock.close()


@contextlib.contextmanager
def cut_proxy(upstream: str) -> Iterator[CutProxy]:
    proxy = CutProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
