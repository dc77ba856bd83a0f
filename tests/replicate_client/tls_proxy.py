"""HTTPS in front of the local stack, as API Gateway is in front of a deployed one: terminates TLS
with a certificate made for 127.0.0.1, forwards each request unchanged to the local stack with
`X-Forwarded-Proto: https` (as API Gateway adds it), and answers what the stack answered.

    python tls_proxy.py UPSTREAM_URL CERT_DIR   # prints its https URL on stdout, then serves

The Replicate clients wrap only `https:` (or `data:`) output links as files, so the local stack
is tried through this proxy, as its users meet a deployed stack. Standard library and openssl."""

import http.client
import http.server
import ssl
import subprocess
import sys
import urllib.parse
from pathlib import Path

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def make_certificate(folder: Path) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def handler_for(upstream: urllib.parse.SplitResult):
    class Forward(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self):
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            headers["X-Forwarded-Proto"] = "https"
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
            finally:
                connection.close()
            self.send_response(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = forward

        def log_message(self, *args):
            pass

    return Forward


def main():
    upstream = urllib.parse.urlsplit(sys.argv[1])
    cert, key = make_certificate(Path(sys.argv[2]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(upstream))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"https://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
