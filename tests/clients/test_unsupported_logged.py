"""Unsupported APIs and features are named in the broker's log, once per connection (issue 15,
item 7): a client that fails on one otherwise times out or errors with nothing to go on."""

import socket
import struct
import time

from harness import running_broker


def frame(api_key, version, correlation_id, client_id=b"raw-test", body=b""):
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def read_frame(sock):
    size = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))[0]
    return sock.recv(size, socket.MSG_WAITALL)


def warn_lines(broker, needle, at_least=1):
    """The broker's log lines containing `needle`, once at least `at_least` arrived (stderr is
    read by a thread) or after 5 s, plus a moment for any extra line to show."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if sum(needle in l for l in broker.stderr_text().splitlines()) >= at_least:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    return [l for l in broker.stderr_text().splitlines() if needle in l]


def test_an_unsupported_api_is_logged_once_per_connection(tmp_path):
    # CreateDelegationToken (38) v0: not served (no delegation tokens). Sent three times on one
    # connection, then once on another: two log lines, each naming the API.
    with running_broker(tmp_path) as b:
        host, port = b.bootstrap.rsplit(":", 1)
        for conn, times in ((1, 3), (2, 1)):
            with socket.create_connection((host, int(port))) as s:
                for i in range(times):
                    s.sendall(frame(38, 0, i))
                    body = read_frame(s)
                    corr, code = struct.unpack(">ih", body[:6])
                    assert corr == i and code == 35, (corr, code)  # UNSUPPORTED_VERSION
        lines = warn_lines(b, "CreateDelegationToken (38)", at_least=2)
        assert len(lines) == 2, b.stderr_text()[-3000:]
        assert all("WARN" in l and "does not serve" in l for l in lines), lines
