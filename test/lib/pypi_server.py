"""A local package index (PEP 503 simple API) for the tests, serving real wheels from a
directory with the cache headers pip needs to keep a download in its HTTP cache
(`Cache-Control: max-age=..., immutable`; the package proxy of these machines strips them).

usage: python3 pypi_server.py --dir WHEELS --port PORT [--host 127.0.0.1] [--rate BYTES_PER_S]
  /simple/                 the project list
  /simple/<project>/       links to /files/<wheel>#sha256=...
  /files/<wheel>           the wheel, Cache-Control: max-age=31536000, immutable
--rate throttles file downloads (a slow internet link, for benchmarks).
"""

import argparse
import hashlib
import html
import os
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class Index:
    def __init__(self, root: str):
        self.root = root
        self.projects: dict[str, list[tuple[str, str]]] = {}
        for f in sorted(os.listdir(root)):
            if not (f.endswith(".whl") or f.endswith(".tar.gz")):
                continue
            with open(os.path.join(root, f), "rb") as fh:
                digest = hashlib.sha256(fh.read()).hexdigest()
            project = normalize(f.split("-")[0])
            self.projects.setdefault(project, []).append((f, digest))


class Handler(BaseHTTPRequestHandler):
    index: Index
    rate: int = 0

    def log_message(self, fmt, *args):  # quiet; the tests read pip's log, not ours
        pass

    def send_body(self, body: bytes, ctype: str, cache: str):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        if self.command == "HEAD":
            return
        if self.rate > 0:
            chunk = max(1, self.rate // 10)
            for i in range(0, len(body), chunk):
                self.wfile.write(body[i : i + chunk])
                time.sleep(len(body[i : i + chunk]) / self.rate)
        else:
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?")[0]
        if path in ("/simple", "/simple/"):
            links = "".join(
                f'<a href="/simple/{p}/">{p}</a>\n' for p in sorted(self.index.projects)
            )
            body = f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode()
            return self.send_body(body, "text/html", "max-age=600")
        m = re.fullmatch(r"/simple/([^/]+)/?", path)
        if m:
            files = self.index.projects.get(normalize(m.group(1)))
            if files is None:
                return self.send_error(404, "no such project")
            links = "".join(
                f'<a href="/files/{html.escape(f)}#sha256={d}">{html.escape(f)}</a>\n'
                for f, d in files
            )
            body = f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode()
            return self.send_body(body, "text/html", "max-age=600")
        m = re.fullmatch(r"/files/([^/]+)", path)
        if m and ".." not in m.group(1):
            p = os.path.join(self.index.root, m.group(1))
            if os.path.isfile(p):
                with open(p, "rb") as fh:
                    body = fh.read()
                return self.send_body(
                    body, "application/octet-stream", "max-age=31536000, immutable"
                )
        self.send_error(404, "not found")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--rate", type=int, default=0)
    a = ap.parse_args()
    Handler.index = Index(a.dir)
    Handler.rate = a.rate
    ThreadingHTTPServer((a.host, a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
