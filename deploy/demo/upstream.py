#!/usr/bin/env python3
"""A demo upstream for portcullis: shows what reached it.

Every request, whatever its method or path, is answered with a page listing the
method, the path (with query) and every request header received. The identity
headers the gateway sets (X-Auth-*) are highlighted. With `Accept: application/json`
the same information comes back as JSON.

Python 3 standard library only.

    python3 deploy/demo/upstream.py                        # 127.0.0.1:3000
    python3 deploy/demo/upstream.py --host 0.0.0.0 --port 3000
    UPSTREAM_HOST=0.0.0.0 UPSTREAM_PORT=3000 python3 deploy/demo/upstream.py

Never expose it directly: it trusts X-Auth-* blindly, which is the point of putting
portcullis in front of it.
"""

import argparse
import html
import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IDENTITY_PREFIX = "x-auth-"

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>portcullis demo upstream</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #222; }}
h1 {{ font-size: 1.4rem; }}
table {{ border-collapse: collapse; margin-top: 1rem; }}
th, td {{ text-align: left; padding: .3rem .8rem; border-bottom: 1px solid #ddd;
          font-family: ui-monospace, monospace; font-size: .9rem; vertical-align: top; }}
td {{ word-break: break-all; max-width: 60rem; }}
tr.identity {{ background: #fff4c2; font-weight: bold; }}
.who {{ padding: .6rem 1rem; background: #e8f4ea; border-left: 4px solid #2e7d32; }}
.anon {{ padding: .6rem 1rem; background: #f3f3f3; border-left: 4px solid #999; }}
nav a {{ margin-right: 1rem; }}
</style>
</head>
<body>
<h1>portcullis demo upstream</h1>
{who}
<p><code>{method} {path}</code></p>
<nav>
<a href="/">/</a>
<a href="/api/public">/api/public</a>
<a href="/admin/">/admin/</a>
<a href="/oauth2/userinfo">/oauth2/userinfo</a>
<a href="/oauth2/logout?rd=/api/public">log out</a>
</nav>
<table>
<tr><th>header</th><th>value</th></tr>
{rows}
</table>
<p><small>Highlighted rows are the identity headers set by the gateway.</small></p>
</body>
</html>
"""


def wants_json(accept):
    """True when the client asks for JSON rather than HTML."""
    if not accept:
        return False
    accept = accept.lower()
    return "application/json" in accept and "text/html" not in accept


class Handler(BaseHTTPRequestHandler):
    server_version = "portcullis-demo-upstream/1"
    protocol_version = "HTTP/1.1"

    def _describe(self):
        headers = [(name, value) for name, value in self.headers.items()]
        identity = {
            name: value
            for name, value in headers
            if name.lower().startswith(IDENTITY_PREFIX)
        }
        return {
            "method": self.command,
            "path": self.path,
            "headers": [[name, value] for name, value in headers],
            "identity": identity,
        }

    def _answer(self):
        length = self.headers.get("Content-Length")
        if length and length.isdigit():
            # Drain the body so the connection can be reused; its content is not shown.
            self.rfile.read(int(length))
        info = self._describe()
        if wants_json(self.headers.get("Accept")):
            body = json.dumps(info, indent=2).encode() + b"\n"
            ctype = "application/json"
        else:
            body = self._html(info).encode()
            ctype = "text/html; charset=utf-8"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    @staticmethod
    def _html(info):
        rows = []
        for name, value in info["headers"]:
            cls = ' class="identity"' if name.lower().startswith(IDENTITY_PREFIX) else ""
            rows.append(
                "<tr{}><td>{}</td><td>{}</td></tr>".format(
                    cls, html.escape(name), html.escape(value)
                )
            )
        ident = {k.lower(): v for k, v in info["identity"].items()}
        user = ident.get("x-auth-user")
        if user:
            roles = ident.get("x-auth-roles", "")
            who = '<p class="who">Signed in as <b>{}</b>{}</p>'.format(
                html.escape(user),
                " with roles <b>{}</b>".format(html.escape(roles)) if roles else "",
            )
        else:
            who = '<p class="anon">No identity headers: an anonymous request.</p>'
        return PAGE.format(
            who=who,
            method=html.escape(info["method"]),
            path=html.escape(info["path"]),
            rows="\n".join(rows),
        )

    do_GET = _answer
    do_HEAD = _answer
    do_POST = _answer
    do_PUT = _answer
    do_PATCH = _answer
    do_DELETE = _answer
    do_OPTIONS = _answer

    def log_message(self, fmt, *args):
        sys.stderr.write("upstream: %s %s\n" % (self.address_string(), fmt % args))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host",
        default=os.environ.get("UPSTREAM_HOST", "127.0.0.1"),
        help="address to bind (env UPSTREAM_HOST, default 127.0.0.1)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("UPSTREAM_PORT", "3000")),
        help="port (env UPSTREAM_PORT, default 3000)",
    )
    args = parser.parse_args(argv)

    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.daemon_threads = True

    def stop(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(
        "upstream: listening on http://{}:{}".format(args.host, args.port),
        file=sys.stderr,
        flush=True,
    )
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
