#!/usr/bin/env python3
"""A small HTTP proxy on 127.0.0.1 for deployctl's proxy tests: CONNECT tunnels (for https) and
absolute-form requests (for plain http), to loopback addresses only.

Usage: proxy.py LOG_FILE PARENT_PID [USER:PASSWORD]
Prints its port; logs each request line (and whether Proxy-Authorization matched) to LOG_FILE;
stops when PARENT_PID is gone (or after 15 minutes).
"""
import base64
import lifeline
import select
import socket
import socketserver
import sys
import threading
import time
from urllib.parse import urlsplit

LOG_FILE, PARENT = sys.argv[1], int(sys.argv[2])
CREDENTIALS = sys.argv[3] if len(sys.argv) > 3 else None
lock = threading.Lock()


def log(line):
    with lock, open(LOG_FILE, "a") as f:
        f.write(line + "\n")


def pipe(a, b):
    end = time.time() + 300
    sockets = [a, b]
    while time.time() < end:
        ready, _, _ = select.select(sockets, [], [], 1)
        for s in ready:
            data = s.recv(65536)
            if not data:
                return
            (b if s is a else a).sendall(data)


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        client = self.request
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = client.recv(4096)
            if not chunk:
                return
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        authorized = CREDENTIALS is None or headers.get("proxy-authorization") == "Basic " + base64.b64encode(CREDENTIALS.encode()).decode()
        log("%s %s auth=%s" % (method, target, "ok" if authorized else "refused"))
        if not authorized:
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            return
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
        else:
            url = urlsplit(target)
            host, port = url.hostname, url.port or 80
        if host not in ("127.0.0.1", "localhost", "::1", "[::1]"):
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=30)
        if method == "CONNECT":
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            url = urlsplit(target)
            path = url.path + ("?" + url.query if url.query else "")
            kept = [l for l in lines[1:] if not l.lower().startswith("proxy-")]
            upstream.sendall(("%s %s HTTP/1.1\r\n" % (method, path) + "\r\n".join(kept) + "\r\n\r\n").encode("latin-1") + rest)
        pipe(client, upstream)
        upstream.close()


if __name__ == "__main__":
    lifeline.hold(PARENT)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()
