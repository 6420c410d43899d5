"""Serves the benchmark provider's JWKS over TLS, for mod_auth_openidc.

mod_auth_openidc refuses a JWKS URL that is not https (OIDCOAuthVerifyJwksUri), and the
benchmark's provider (examples/bench_env.rs) speaks plain HTTP. This relays each GET to
the provider's JWKS URL, over TLS with a self-signed certificate for 127.0.0.1 that
apache.conf names as the CA bundle, so the module still validates the server. It is
fetched once per refresh interval (an hour), not per request.

    python3 tls_jwks.py PORT CERT KEY JWKS_URL
"""

import http.server
import ssl
import sys
import urllib.request

port, cert, key, jwks_url = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


class Relay(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with urllib.request.urlopen(jwks_url, timeout=10) as answer:
            body = answer.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Relay)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
