"""The emulators' HTTP server takes a burst of connections as a registry's front end does."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler

from emulators.base import EmulatorServer


def test_a_burst_of_connections_is_queued_not_dropped():
    """64 connections opened while the server accepts none (as when a load's workers open
    theirs at once): each completes its handshake at once. With socketserver's backlog of 5 the
    kernel dropped the attempts beyond it; clients resent them a second later, which stalled
    the benchmarks' loads (ListenOverflows in `nstat`)."""
    server = EmulatorServer(("127.0.0.1", 0), BaseHTTPRequestHandler)  # bound and listening, never served
    clients = []
    try:
        for _ in range(64):
            client = socket.create_connection(server.server_address[:2], timeout=0.9)  # a dropped SYN is resent after 1 s
            clients.append(client)
        assert len(clients) == 64
    finally:
        for client in clients:
            client.close()
        server.server_close()
