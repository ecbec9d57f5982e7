"""The gateway's inference client sends a call once more only when a kept-alive connection was closed
under it, never after a timeout (the caller has waited long enough), against real sockets."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from gateway.exceptions import Unavailable
from gateway.inference_client import InferenceClient
from gateway.settings import Settings

ANSWER = b'{"live": true}'


class _Server:
    """A TCP server on a thread that handles each connection with `handle(connection)` and counts them."""

    def __init__(self, handle):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.handle = handle
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.handle, args=(connection,), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


def _client(port: int, timeout: float = 1.0) -> InferenceClient:
    settings = Settings(
        environment="development", inference_url=f"http://127.0.0.1:{port}", inference_timeout_seconds=timeout
    )
    return InferenceClient(settings)


def _answer_once_then_close_on_the_next_request(connection: socket.socket) -> None:
    """Answers one request as if the connection stayed open (keep-alive), then takes the next request on it and
    closes the connection without an answer, as a server whose keep-alive timeout ran out at that moment."""
    with connection:
        connection.recv(65536)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(ANSWER)}\r\n\r\n"
        connection.sendall(head.encode() + ANSWER)
        connection.recv(65536)


def _never_answer(connection: socket.socket) -> None:
    with connection:
        connection.recv(65536)
        time.sleep(5)


@pytest.fixture
def server_of():
    started = []

    def start(handle) -> _Server:
        started.append(_Server(handle))
        return started[-1]

    yield start
    for server in started:
        server.close()


def test_a_call_on_a_connection_the_server_closed_is_sent_once_more_on_a_new_one(server_of):
    server = server_of(_answer_once_then_close_on_the_next_request)
    client = _client(server.port)
    for _ in range(3):
        assert client._json("GET", "/v2/health/ready") == {"live": True}
    assert server.connections == 3  # the 2nd and 3rd calls each met a closed connection, then got a new one


def test_a_call_that_timed_out_is_not_sent_again(server_of):
    server = server_of(_never_answer)
    client = _client(server.port, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(Unavailable) as refused:
        client.classify(b"\xff\xd8\xff", "image/jpeg", "pneumonia-xray")
    assert refused.value.code == "inference_unavailable"
    assert time.monotonic() - started < 1.0  # one timeout, not two
    assert server.connections == 1
