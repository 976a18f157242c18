#!/usr/bin/env python3
"""Build the benchmark corpora: directories shaped exactly like a real pip cache.

Run through bench/corpus.sh, which makes the venv (a pip new enough to write `http-v2/`)
and runs this file with it. Everything lives outside the repository, under
$CICACHE_BENCH_DIR (default /var/tmp/cicache-bench), and is kept between runs:

  wheels/{base,big,small,extra}/   real wheels from PyPI, downloaded once by `pip download`
  corpus-pip/                      a pip cache dir: http-v2/a/b/c/d/e/<sha224>{,.body}
  corpus-pip-2g/                   the same plus the big wheels (about 2.3 GB)
  delta-one-wheel/                 the files pip adds to a cache for one more wheel (lxml)
  corpus-*.json                    what each corpus is made of (counts, bytes)

How the cache files are made: a local index on 127.0.0.1 serves the downloaded wheels
(PEP 503 pages, PEP 658 `.metadata` files, the wheels) with the Cache-Control headers PyPI
sends, and real pip (`pip download --cache-dir`) fetches every wheel through it, so pip
itself writes the header files (cachecontrol's serialized response) and the `.body` files.
The package proxy of these machines strips Cache-Control, so pip against it writes no
`http-v2/` at all; hence the local index.

A real agent's cache also holds many small responses (index pages and metadata of every
package resolved over months). To reach 3,000+ small files the corpus adds such small
responses: files taken from inside the downloaded wheels (METADATA, RECORD, sources; real
bytes), served by the same local index and fetched through pip's own PipSession, so they
are stored by pip's cache code too. The JSON file beside each corpus counts both kinds.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SMALL_LIMIT = 256 * 1024  # files below this size are "small" (the store's blob threshold)


def log(msg: str) -> None:
    print(f"corpus: {msg}", file=sys.stderr, flush=True)


def read_list(name: str) -> list[str]:
    lines = (BENCH / name).read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def download(wheel_dir: Path, list_name: str) -> None:
    """`pip download` the wheels of a list once (a stamp records which list was fetched)."""
    reqs = read_list(list_name)
    stamp = wheel_dir / ".downloaded"
    want = hashlib.sha256("\n".join(reqs).encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    wheel_dir.mkdir(parents=True, exist_ok=True)
    log(f"downloading {len(reqs)} wheels of {list_name} into {wheel_dir}")
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
         "-d", str(wheel_dir), *reqs],
        check=True, env=env,
    )
    stamp.write_text(want)


def wheels_in(*dirs: Path) -> list[Path]:
    return sorted(p for d in dirs for p in d.glob("*.whl"))


def wheel_metadata(path: Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            parts = info.filename.split("/")
            if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA":
                return zf.read(info)
    raise SystemExit(f"corpus: {path} has no .dist-info/METADATA; delete it and rerun")


class Index:
    """A PEP 503 index on 127.0.0.1 that sends PyPI's cache headers."""

    def __init__(self, wheels: list[Path]):
        self.files: dict[str, Path] = {w.name: w for w in wheels}
        self.projects: dict[str, list[Path]] = {}
        for w in wheels:
            self.projects.setdefault(normalize(w.name.split("-")[0]), []).append(w)
        self.extra: dict[str, bytes] = {}  # path -> body, for the small responses
        self._sha: dict[str, str] = {}
        index = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                body, ctype, cc = index.route(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", cc)
                self.send_header("ETag", '"' + hashlib.md5(body).hexdigest() + '"')
                self.send_header("Last-Modified", formatdate(1700000000, usegmt=True))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.host}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sha256(self, path: Path) -> str:
        key = str(path)
        if key not in self._sha:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            self._sha[key] = h.hexdigest()
        return self._sha[key]

    def route(self, path: str):
        immutable = "max-age=365000000, immutable, public"
        m = re.fullmatch(r"/simple/([^/]+)/", path)
        if m:
            rows = []
            for w in self.projects.get(m.group(1), []):
                meta = hashlib.sha256(wheel_metadata(w)).hexdigest()
                rows.append(
                    f'<a href="../../files/{html.escape(w.name)}#sha256={self.sha256(w)}" '
                    f'data-dist-info-metadata="sha256={meta}" data-core-metadata="sha256={meta}">'
                    f"{html.escape(w.name)}</a><br/>"
                )
            if not rows:
                return None, "", ""
            page = ("<!DOCTYPE html><html><head><meta name=\"pypi:repository-version\" "
                    "content=\"1.1\"></head><body>\n" + "\n".join(rows) + "\n</body></html>\n")
            return page.encode(), "text/html", "max-age=600, public"
        m = re.fullmatch(r"/files/([^/]+\.whl)(\.metadata)?", path)
        if m and m.group(1) in self.files:
            w = self.files[m.group(1)]
            if m.group(2):
                return wheel_metadata(w), "binary/octet-stream", immutable
            return w.read_bytes(), "binary/octet-stream", immutable
        if path in self.extra:
            return self.extra[path], "binary/octet-stream", immutable
        return None, "", ""

    def close(self) -> None:
        self.server.shutdown()


def pip_fetch(index: Index, cache_dir: Path, wheels: list[Path]) -> None:
    """Real pip downloads the wheels through the local index into cache_dir."""
    reqs = []
    for w in wheels:
        name, version = w.name.split("-")[:2]
        reqs.append(f"{normalize(name)}=={version}")
    with tempfile.TemporaryDirectory(prefix="cicache-bench-dl-", dir=cache_dir.parent) as dl:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        subprocess.run(
            [sys.executable, "-m", "pip", "--isolated", "download", "-q", "--no-deps",
             "--only-binary=:all:", "--index-url", f"{index.url}/simple",
             "--trusted-host", index.host, "--cache-dir", str(cache_dir), "-d", dl, *reqs],
            check=True, env=env,
        )


def small_responses(wheels: list[Path], count: int) -> list[tuple[str, bytes]]:
    """`count` small real files from inside the wheels, spread over all wheels."""
    per_wheel: list[list[tuple[str, bytes]]] = []
    for w in wheels:
        items = []
        with zipfile.ZipFile(w) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if info.is_dir() or not (200 <= info.file_size < 64 * 1024):
                    continue
                items.append((f"/files/{w.name}/{info.filename}", info))
            # take at most 60 per wheel, evenly spaced, read lazily below
            step = max(1, len(items) // 60)
            per_wheel.append([(p, zf.read(i)) for p, i in items[::step][:60]])
    out: list[tuple[str, bytes]] = []
    i = 0
    while len(out) < count and any(per_wheel):
        for lst in per_wheel:
            if i < len(lst) and len(out) < count:
                out.append(lst[i])
        i += 1
        if all(i >= len(lst) for lst in per_wheel):
            break
    return out


def add_small_responses(index: Index, cache_dir: Path, items: list[tuple[str, bytes]]) -> None:
    """Fetch small responses through pip's own session, so pip's cache code stores them."""
    from pip._internal.network.session import PipSession

    for path, body in items:
        index.extra[path] = body
    session = PipSession(cache=str(cache_dir / "http-v2"), trusted_hosts=[index.host])
    for path, body in items:
        resp = session.get(index.url + path)
        resp.raise_for_status()
        if resp.content != body:
            raise SystemExit(f"corpus: {path} came back changed")


def census(root: Path) -> dict:
    files = small = small_bytes = total = 0
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            size = os.lstat(os.path.join(dirpath, n)).st_size
            files += 1
            total += size
            if size < SMALL_LIMIT:
                small += 1
                small_bytes += size
    return {"files": files, "bytes": total, "small_files": small, "small_bytes": small_bytes,
            "large_files": files - small, "large_bytes": total - small_bytes}


def build(root: Path, name: str, wheels: list[Path], min_small: int, base: Path | None,
          extra_small: int | None, force: bool) -> dict:
    target = root / name
    info_path = root / f"{name}.json"
    if target.exists() and info_path.exists() and not force:
        info = json.loads(info_path.read_text())
        log(f"{target} exists ({info['census']['bytes'] / 1e6:.0f} MB, "
            f"{info['census']['files']} files); --force rebuilds it")
        return info
    if target.exists():
        shutil.rmtree(target)
    tmp = root / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    if base is not None:
        subprocess.run(["cp", "-a", str(base), str(tmp)], check=True)
    else:
        tmp.mkdir(parents=True)
    index = Index(wheels)
    try:
        log(f"{name}: real pip fetches {len(wheels)} wheels through {index.url}")
        pip_fetch(index, tmp, wheels)
        c = census(tmp)
        if extra_small is None:
            extra_small = max(0, (min_small - c["small_files"] + 1) // 2)
        if extra_small:
            log(f"{name}: adding {extra_small} small responses (2 files each) through PipSession")
            add_small_responses(index, tmp, small_responses(wheels, extra_small))
    finally:
        index.close()
    os.rename(tmp, target)
    info = {
        "name": name,
        "path": str(target),
        "wheels": [w.name for w in wheels],
        "wheel_bytes": sum(w.stat().st_size for w in wheels),
        "small_responses_added": extra_small,
        "based_on": base.name if base is not None else None,
        "census": census(target),
        "pip": subprocess.run([sys.executable, "-m", "pip", "--version"], check=True,
                              capture_output=True, text=True).stdout.split(" from ")[0],
    }
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    c = info["census"]
    log(f"{name}: {c['files']} files, {c['bytes'] / 1e6:.0f} MB; small (<256 KiB): "
        f"{c['small_files']} files; large: {c['large_files']} files, {c['large_bytes'] / 1e6:.0f} MB")
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=os.environ.get("CICACHE_BENCH_DIR", "/var/tmp/cicache-bench"),
                    help="where wheels and corpora live (env CICACHE_BENCH_DIR)")
    ap.add_argument("--no-2g", action="store_true", help="skip the 2 GB variant")
    ap.add_argument("--force", action="store_true", help="rebuild the corpora (keeps the wheels)")
    args = ap.parse_args()
    root = Path(args.dir)
    wd = root / "wheels"
    download(wd / "base", "wheels-base.txt")
    download(wd / "small", "wheels-small.txt")
    download(wd / "extra", "wheels-extra.txt")
    if not args.no_2g:
        download(wd / "big", "wheels-2g.txt")

    base_wheels = wheels_in(wd / "base", wd / "small")
    build(root, "corpus-pip", base_wheels, 3200, None, None, args.force)
    # What pip adds for one more wheel (index page, metadata, the wheel: 3 entries, 6 files).
    build(root, "delta-one-wheel", wheels_in(wd / "extra"), 0, None, 0, args.force)
    if not args.no_2g:
        # The 2 GB variant: the base corpus plus the big wheels, fetched into it by pip.
        build(root, "corpus-pip-2g", wheels_in(wd / "big"), 0, root / "corpus-pip", 0, args.force)


if __name__ == "__main__":
    main()
