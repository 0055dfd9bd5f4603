#!/usr/bin/env python3
"""A deliberately hostile S3 server on 127.0.0.1 for deployctl's tests.

It is a real HTTP server: in mode "good" it stores objects in memory and answers the S3 calls
deployctl makes (ListObjectsV2, GET/HEAD/PUT/DELETE object, multipart uploads) well enough for a
push and a restore. Every other mode misbehaves on purpose on the requests it targets. The mode
is read from MODE_FILE on every request, so a test can push in "good" mode, then switch.

Usage: hostile_s3.py MODE_FILE LOG_FILE PARENT_PID [--tls CERT KEY] [--host ADDRESS]
Prints the port it listens on, then serves until PARENT_PID is gone (or 15 minutes passed).
Signatures are not checked: this server tests the client, not the other way round.
Every request line and the headers' names are appended to LOG_FILE (one line each).
"""
import base64
import hashlib
import lifeline
import os
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote, urlsplit

MODE_FILE, LOG_FILE, PARENT = sys.argv[1], sys.argv[2], int(sys.argv[3])
OPTIONS = sys.argv[4:]
objects = {}   # key -> (bytes, etag, [(x-amz-meta-* header, value)])
uploads = {}   # upload id -> (key, {part: bytes})
lock = threading.Lock()
issued = 0
flaked = False
IMDS_TOKEN = "imds-session-" + uuid.uuid4().hex
# Bounds so the server itself stops: no misbehaviour runs longer than this.
MAX_MISBEHAVIOUR_SECONDS = 120


def mode():
    try:
        with open(MODE_FILE) as f:
            return f.read().strip()
    except OSError:
        return "good"


def log(line):
    with lock, open(LOG_FILE, "a") as f:
        f.write(line + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # --- plumbing -------------------------------------------------------------------------------

    def split(self):
        url = urlsplit(self.path)
        parts = url.path.lstrip("/").split("/", 1)
        bucket = unquote(parts[0])
        key = unquote(parts[1]) if len(parts) > 1 else ""
        return bucket, key, dict(parse_qsl(url.query, keep_blank_values=True))

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        data = b""
        while len(data) < length:
            chunk = self.rfile.read(min(1 << 20, length - len(data)))
            if not chunk:
                break
            data += chunk
        return data

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def raw(self, data):
        self.wfile.write(data)
        self.wfile.flush()
        self.close_connection = True

    def error(self, status, code, message, extra=""):
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code><Message>%s</Message>%s</Error>"
                % (code, message, extra)).encode()
        self.send(status, body, [("Content-Type", "application/xml")])

    def stall(self):
        """Holds the connection open, sending nothing more, until the client leaves."""
        end = time.time() + MAX_MISBEHAVIOUR_SECONDS
        self.connection.settimeout(1)
        while time.time() < end:
            try:
                if self.connection.recv(1) == b"":
                    return
            except socket.timeout:
                continue
            except OSError:
                return

    def drip(self, data, every=2.0):
        """Sends `data` one byte every `every` seconds."""
        end = time.time() + MAX_MISBEHAVIOUR_SECONDS
        for i in range(len(data)):
            if time.time() > end:
                return
            try:
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
            except OSError:
                return
            time.sleep(every)

    def endless(self, head):
        self.wfile.write(head)
        block = b"A" * 65536
        end = time.time() + MAX_MISBEHAVIOUR_SECONDS
        try:
            while time.time() < end:
                self.wfile.write(block)
        except OSError:
            pass
        self.close_connection = True

    # --- requests -------------------------------------------------------------------------------

    def handle_any(self):
        m = mode()
        bucket, key, query = self.split()
        auth = self.headers.get("Authorization") or ""
        credential = auth.split("Credential=", 1)[1].split(",", 1)[0] if "Credential=" in auth else "-"
        log("%s %s %s | %s | credential=%s token=%s" % (m, self.command, self.path, ",".join(k.lower() for k in self.headers.keys()),
                                                        credential, self.headers.get("x-amz-security-token") or "-"))
        data = self.body() if self.command in ("PUT", "POST") else b""
        if self.credentials(bucket, key, data):
            return
        listing = self.command == "GET" and key == "" and "list-type" in query
        is_object_get = self.command == "GET" and key != "" and not key.endswith(".json") and "uploadId" not in query
        target = {
            "listing": listing,
            "object": is_object_get,
            "any": True,
            "write": self.command in ("PUT", "POST"),
        }

        def hits(scope):
            return target[scope]

        # Misbehaviours, each on the requests it names.
        if m == "list-html" and hits("listing"):
            return self.send(200, b"<html><body><h1>Welcome to the captive portal</h1>", [("Content-Type", "text/html")])
        if m == "list-garbage" and hits("listing"):
            return self.send(200, os.urandom(300))
        if m == "list-truncated-xml" and hits("listing"):
            return self.send(200, b"<?xml version=\"1.0\"?><ListBucketResult><Name>b</Name><Contents><Key>lend")
        if m == "list-empty-200" and hits("listing"):
            return self.send(200, b"")
        if m == "list-loop" and hits("listing"):
            page = ("<?xml version=\"1.0\"?><ListBucketResult><Name>%s</Name><IsTruncated>true</IsTruncated>"
                    "<NextContinuationToken>same-token</NextContinuationToken></ListBucketResult>" % bucket).encode()
            return self.send(200, page, [("Content-Type", "application/xml")])
        if m == "list-foreign-prefix" and hits("listing"):
            # A store ignoring the prefix: another host's copy in the answer.
            page = ("<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>elsewhere/%sx.db</Key>"
                    "<Size>5</Size></Contents></ListBucketResult>" % query.get("prefix", "")).encode()
            return self.send(200, page)
        if m == "list-endless-pages" and hits("listing"):
            # Every page at once, each with new keys and a new token: no wait to stop in, no end.
            token = query.get("continuation-token", "0")
            n = int(token) + 1 if token.isdigit() else 1
            keys = "".join("<Contents><Key>%sjunk/%d-%d</Key><Size>1</Size></Contents>" % (query.get("prefix", ""), n, i) for i in range(1000))
            page = ("<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>true</IsTruncated>"
                    "<NextContinuationToken>%d</NextContinuationToken>%s</ListBucketResult>" % (n, keys)).encode()
            return self.send(200, page, [("Content-Type", "application/xml")])
        if m == "list-bad-size" and hits("listing"):
            page = ("<?xml version=\"1.0\"?><ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>%shost/x.db</Key>"
                    "<Size>-5</Size></Contents></ListBucketResult>" % query.get("prefix", "")).encode()
            return self.send(200, page)
        if m == "negative-chunk" and hits("listing"):
            return self.raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n-5\r\n\r\n0\r\n\r\n")
        if m == "bad-status" and hits("any"):
            return self.raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        if m == "stall-after-headers" and hits("any"):
            self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n")
            return self.stall()
        if m == "drip" and hits("any"):
            self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n")
            return self.drip(b"<" * 100000)
        if m == "endless-500" and hits("any"):
            return self.endless(b"HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n")
        if m == "endless-object" and hits("object"):
            return self.endless(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        if m in ("request-timeout-once", "slowdown-once", "reset-once") and hits("listing"):
            global flaked
            with lock:
                first = not flaked
                flaked = True
            if first and m == "request-timeout-once":
                return self.error(400, "RequestTimeout", "Your socket connection to the server was not read from or written to within the timeout period.")
            if first and m == "slowdown-once":
                return self.error(503, "SlowDown", "Please reduce your request rate.")
            if first:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.close_connection = True
                return
        if m == "storm-500" and hits("any"):
            return self.error(500, "InternalError", "We encountered an internal error. Please try again.")
        if m == "storm-503" and hits("any"):
            return self.error(503, "SlowDown", "Please reduce your request rate.")
        if m == "redirect" and hits("any"):
            return self.send(307, b"", [("Location", "http://127.0.0.2:%d%s" % (self.server.server_port, self.path))])
        if m == "wrong-region" and hits("any"):
            self.send_response(301)
            body = ("<?xml version=\"1.0\"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access "
                    "must be addressed using the specified endpoint.</Message><Endpoint>%s.s3.eu-west-3.amazonaws.com</Endpoint>"
                    "<Bucket>%s</Bucket></Error>" % (bucket, bucket)).encode()
            self.send_header("x-amz-bucket-region", "eu-west-3")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            return self.raw(body)
        if m == "huge-headers" and hits("any"):
            self.send_response(200)
            for i in range(200):
                self.send_header("x-amz-meta-pad%d" % i, "p" * 1000)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return self.raw(b"")
        if m == "many-headers" and hits("any"):
            self.raw(b"HTTP/1.1 200 OK\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(5000)) + b"Content-Length: 0\r\n\r\n")
            return
        if m == "esc-message" and hits("any"):
            echoed = "; ".join("%s=%s" % (k, v) for k, v in self.headers.items())
            message = "\x1b]0;pwned-title\x07\x1b[2K\x1b[31mAccess\x1b[0m denied\r\x9b31m echo: " + echoed
            return self.error(400, "Invalid\x1b[1mArgument", message)
        if m == "truncated-object" and hits("object") and key in objects:
            data_ = objects[key][0]
            self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(data_) + data_[: len(data_) // 2])
            return
        if m == "short-length-object" and hits("object") and key in objects:
            data_ = objects[key][0]
            # Content-Length says less than the object: what arrives is a prefix.
            self.raw(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (len(data_) - 7) + data_)
            return
        if m == "overlong-object" and hits("object") and key in objects:
            data_ = objects[key][0] + b"EXTRA-BYTES-THE-STORE-ADDED"
            return self.send(200, data_, [("ETag", '"%s"' % objects[key][1])])
        if m == "flip-object" and hits("object") and key in objects:
            data_ = bytearray(objects[key][0])
            data_[len(data_) // 2] ^= 0xFF
            return self.send(200, bytes(data_), [("ETag", '"%s"' % objects[key][1])])
        if m == "reset-writes" and hits("write"):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.close_connection = True
            return
        opaque = m == "opaque-etag"
        return self.good(bucket, key, query, data, opaque)

    # --- stand-ins for the credential sources: STS, ECS container credentials, EC2 IMDSv2 --------

    def issue(self, prefix):
        """New temporary credentials, numbered; they expire after EXPIRY_FILE's seconds (default an hour)."""
        global issued
        with lock:
            issued += 1
            n = issued
        try:
            with open(os.path.join(os.path.dirname(MODE_FILE), "expiry")) as f:
                seconds = float(f.read().strip())
        except OSError:
            seconds = 3600
        expiry = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + seconds))
        return "%s%d" % (prefix, n), "%s-secret-%d" % (prefix.lower(), n), "%s-token-%d" % (prefix.lower(), n), expiry

    def json_credentials(self, prefix):
        import json
        key, secret, token, expiry = self.issue(prefix)
        body = json.dumps({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": key, "SecretAccessKey": secret,
                           "Token": token, "Expiration": expiry}).encode()
        self.send(200, body, [("Content-Type", "application/json")])

    def credentials(self, bucket, key, data):
        path = urlsplit(self.path).path
        if path == "/latest/api/token":
            if self.command != "PUT" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                self.send(405 if self.command != "PUT" else 400)
            else:
                self.send(200, IMDS_TOKEN.encode())
            return True
        if path.startswith("/latest/meta-data/iam/security-credentials/"):
            if self.headers.get("X-aws-ec2-metadata-token") != IMDS_TOKEN:
                self.send(401)
            elif path.endswith("/security-credentials/"):
                self.send(200, b"deployctl-role")
            elif path.endswith("/deployctl-role"):
                self.json_credentials("IMDS")
            else:
                self.send(404)
            return True
        if path == "/ecs-credentials":
            if self.headers.get("Authorization") != "ecs-authorization-token":
                self.send(403, b'{"message": "bad token"}')
            else:
                self.json_credentials("ECS")
            return True
        if self.command == "POST" and bucket == "" and key == "":
            form = dict(parse_qsl(data.decode()))
            if form.get("Action") != "AssumeRoleWithWebIdentity" or form.get("WebIdentityToken") != "web-identity-jwt" \
                    or form.get("RoleArn") != "arn:aws:iam::123456789012:role/deployctl":
                self.send(400, b"<ErrorResponse><Error><Code>InvalidIdentityToken</Code><Message>bad</Message></Error></ErrorResponse>")
                return True
            key_id, secret, token, expiry = self.issue("STS")
            body = ("<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>%s</AccessKeyId>"
                    "<SecretAccessKey>%s</SecretAccessKey><SessionToken>%s</SessionToken><Expiration>%s</Expiration></Credentials>"
                    "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>" % (key_id, secret, token, expiry)).encode()
            self.send(200, body, [("Content-Type", "text/xml")])
            return True
        return False

    def good(self, bucket, key, query, data, opaque):
        if self.command == "GET" and key == "" and "list-type" in query:
            prefix = query.get("prefix", "")
            encode = query.get("encoding-type") == "url"
            with lock:
                keys = sorted(k for k in objects if k.startswith(prefix))
            entries = "".join("<Contents><Key>%s</Key><Size>%d</Size><ETag>&quot;%s&quot;</ETag>"
                              "<LastModified>2026-01-01T00:00:00.000Z</LastModified></Contents>"
                              % (quote(k, safe="/") if encode else k, len(objects[k][0]), objects[k][1]) for k in keys)
            page = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>%s</Name><Prefix>%s</Prefix>"
                    "%s<IsTruncated>false</IsTruncated>%s</ListBucketResult>"
                    % (bucket, prefix, "<EncodingType>url</EncodingType>" if encode else "", entries)).encode()
            return self.send(200, page, [("Content-Type", "application/xml")])
        if self.command == "GET" and key == "" and "uploads" in query:
            return self.send(200, b"<?xml version=\"1.0\"?><ListMultipartUploadsResult></ListMultipartUploadsResult>")
        if self.command == "POST" and "uploads" in query:
            upload = uuid.uuid4().hex
            with lock:
                uploads[upload] = (key, {})
            return self.send(200, ("<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>%s</Bucket><Key>%s</Key>"
                                   "<UploadId>%s</UploadId></InitiateMultipartUploadResult>" % (bucket, key, upload)).encode())
        if self.command == "PUT" and "uploadId" in query:
            if not self.md5_ok(data):
                return self.error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
            with lock:
                uploads[query["uploadId"]][1][int(query["partNumber"])] = data
            etag = uuid.uuid4().hex if opaque else hashlib.md5(data).hexdigest()
            return self.send(200, b"", [("ETag", '"%s"' % etag)])
        if self.command == "POST" and "uploadId" in query:
            with lock:
                upload_key, parts = uploads.pop(query["uploadId"])
                whole = b"".join(parts[n] for n in sorted(parts))
                etag = uuid.uuid4().hex if opaque else hashlib.md5(whole).hexdigest() + "-%d" % len(parts)
                objects[upload_key] = (whole, etag, [])
            return self.send(200, ("<?xml version=\"1.0\"?><CompleteMultipartUploadResult><Key>%s</Key><ETag>&quot;%s&quot;</ETag>"
                                   "</CompleteMultipartUploadResult>" % (upload_key, etag)).encode())
        if self.command == "DELETE" and "uploadId" in query:
            with lock:
                uploads.pop(query["uploadId"], None)
            return self.send(204)
        if self.command == "PUT":
            if not self.md5_ok(data):
                return self.error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
            if self.headers.get("If-None-Match") == "*" and key in objects:
                return self.error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
            etag = uuid.uuid4().hex if opaque else hashlib.md5(data).hexdigest()
            meta = [(k.lower(), v) for k, v in self.headers.items() if k.lower().startswith("x-amz-meta-")]
            with lock:
                objects[key] = (data, etag, meta)
            return self.send(200, b"", [("ETag", '"%s"' % etag)])
        if self.command in ("GET", "HEAD"):
            with lock:
                found = objects.get(key)
            if found is None:
                return self.error(404, "NoSuchKey", "The specified key does not exist.")
            return self.send(200, found[0], [("ETag", '"%s"' % found[1])] + found[2])
        if self.command == "DELETE":
            with lock:
                objects.pop(key, None)
            return self.send(204)
        return self.error(400, "InvalidRequest", "not understood")

    def md5_ok(self, data):
        given = self.headers.get("Content-MD5")
        return given is None or given == base64.b64encode(hashlib.md5(data).digest()).decode()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


if __name__ == "__main__":
    lifeline.hold(PARENT)
    host = OPTIONS[OPTIONS.index("--host") + 1] if "--host" in OPTIONS else "127.0.0.1"
    if ":" in host:
        ThreadingHTTPServer.address_family = socket.AF_INET6
    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    if "--tls" in OPTIONS:
        import ssl
        at = OPTIONS.index("--tls")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(OPTIONS[at + 1], OPTIONS[at + 2])
        # The handshake happens in the handler's thread, so a client that gives up does not block the server.
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    print(server.server_port, flush=True)
    server.serve_forever()
