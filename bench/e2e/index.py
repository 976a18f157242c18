"""The end-to-end benchmark's package index: a PEP 503 simple index on 127.0.0.1 over a
directory of wheels, with PyPI's cache headers and a throttle that stands in for the
internet link.

usage: python3 index.py --dir WHEELS --port PORT [--host 127.0.0.1] [--rate 20MB]
  /simple/                 the project list                 Cache-Control: max-age=600
  /simple/<project>/       links to /files/<wheel>#sha256=   Cache-Control: max-age=600
  /files/<wheel>           the wheel                        Cache-Control: max-age=31536000, immutable
  /stats                   {"bytes": N, "files": N}: wheel bytes served since the start
--rate (env CICACHE_E2E_RATE; default 20MB = 20,000,000 bytes/s; 0 = unthrottled) is ONE
token bucket shared by all connections (a link, not a per-download limit), burst 1/10 s.
pip keeps a download in its HTTP cache only when the index sends Cache-Control (and, over
plain http, only when the host is trusted: PIP_TRUSTED_HOST).
"""

import argparse
import hashlib
import html
import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_rate(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgG]?)(?:i?B)?(?:/s)?\s*", text)
    if not m:
        raise SystemExit(f"index.py: bad --rate {text!r} (e.g. 20MB, 500kB, 0)")
    mult = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


class Bucket:
    """A token bucket: take(n) sleeps until n bytes may go out at `rate` bytes/s."""

    def __init__(self, rate: int):
        self.rate = rate
        self.burst = max(65536, rate // 10)
        self.tokens = float(self.burst)
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def take(self, n: int):
        if self.rate <= 0:
            return
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                wait = (n - self.tokens) / self.rate
            time.sleep(wait)


class Index:
    def __init__(self, root: str):
        self.root = root
        self.projects: dict[str, list[tuple[str, str]]] = {}
        for f in sorted(os.listdir(root)):
            if not f.endswith(".whl"):
                continue
            h = hashlib.sha256()
            with open(os.path.join(root, f), "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            self.projects.setdefault(normalize(f.split("-")[0]), []).append((f, h.hexdigest()))
        self.served = 0
        self.files = 0
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    index: Index
    bucket: Bucket
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def head(self, ctype: str, length: int, cache: str):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", cache)
        self.end_headers()

    def page(self, body: str):
        data = body.encode()
        self.head("text/html", len(data), "max-age=600")
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = self.path.split("?")[0]
        idx = self.index
        if path == "/stats":
            with idx.lock:
                data = json.dumps({"bytes": idx.served, "files": idx.files}).encode()
            self.head("application/json", len(data), "no-store")
            self.wfile.write(data)
            return
        if path in ("/simple", "/simple/"):
            links = "".join(f'<a href="/simple/{p}/">{p}</a>\n' for p in sorted(idx.projects))
            return self.page(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
        m = re.fullmatch(r"/simple/([^/]+)/?", path)
        if m:
            files = idx.projects.get(normalize(m.group(1)))
            if files is None:
                return self.send_error(404, "no such project")
            links = "".join(
                f'<a href="/files/{html.escape(f)}#sha256={d}">{html.escape(f)}</a>\n'
                for f, d in files
            )
            return self.page(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
        m = re.fullmatch(r"/files/([^/]+)", path)
        if m and ".." not in m.group(1):
            p = os.path.join(idx.root, m.group(1))
            if os.path.isfile(p):
                size = os.path.getsize(p)
                self.head("application/octet-stream", size, "max-age=31536000, immutable")
                if self.command == "HEAD":
                    return
                with open(p, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 16), b""):
                        self.bucket.take(len(block))
                        self.wfile.write(block)
                        with idx.lock:
                            idx.served += len(block)
                with idx.lock:
                    idx.files += 1
                return
        self.send_error(404, "not found")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--rate", default=os.environ.get("CICACHE_E2E_RATE", "20MB"))
    a = ap.parse_args()
    Handler.index = Index(a.dir)
    Handler.bucket = Bucket(parse_rate(a.rate))
    ThreadingHTTPServer((a.host, a.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
