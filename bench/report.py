#!/usr/bin/env python3
"""Turn one bench/run.sh result directory into the tables of docs/BENCHMARKS.md.

    bench/report.py RESULTS_DIR [--write docs/BENCHMARKS.md]

Without --write it prints the markdown. With --write it replaces the part of the file
between `<!-- results:begin -->` and `<!-- results:end -->` (the rest of the file is
written by hand and kept), or creates the file when it does not exist.
Every figure comes from the hyperfine JSON and /usr/bin/time files in RESULTS_DIR.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
MIB = 1024 * 1024


def load(out: Path) -> dict[str, dict]:
    """Merge the per-round hyperfine files raw/NAME.ROUND.json into one record per case."""
    runs: dict[str, list[dict]] = {}
    for f in sorted((out / "raw").glob("*.json")):
        name, rnd = f.stem.rsplit(".", 1)
        r = json.loads(f.read_text())["results"][0]
        runs.setdefault(name, []).append({"round": int(rnd), **r})
    res = {}
    for name, rs in runs.items():
        rs.sort(key=lambda r: r["round"])
        times = [t for r in rs for t in r["times"]]
        res[name] = {
            "name": rs[0]["command"],
            "median": statistics.median(times),
            "min": min(times),
            "max": max(times),
            "runs": len(times),
            "times": times,
            "user": statistics.median([r["user"] for r in rs]),
            "system": statistics.median([r["system"] for r in rs]),
        }
    return res


def kv(path: Path) -> dict[str, str]:
    d = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if "=" in line:
                k, v = line.split("=", 1)
                d[k.strip()] = v.strip()
    return d


def maxrss(out: Path, name: str) -> tuple[float, str] | None:
    f = out / f"{name}.time"
    if not f.exists():
        return None
    text = f.read_text()
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    e = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text)
    if not m:
        return None
    return int(m.group(1)) * 1024 / MIB, e.group(1) if e else "?"


def sizes(out: Path) -> dict[tuple[str, str], int]:
    d = {}
    f = out / "sizes.txt"
    if f.exists():
        for line in f.read_text().splitlines():
            s, what, n = line.split()
            d[(s, what)] = int(n)
    return d


def md(text: str) -> str:
    """A table cell: pipes escaped."""
    return text.replace("|", "\\|")


def fmt_s(x: float) -> str:
    return f"{x:.2f} s" if x >= 0.1 else f"{x * 1000:.0f} ms"


def render(out: Path) -> str:
    res = load(out)
    m = kv(out / "machine.txt")
    sz = sizes(out)
    lines: list[str] = []
    w = lines.append

    def corpus_line(name: str) -> None:
        f = out / f"{name}.json"
        if f.exists():
            c = json.loads(f.read_text())
            k = c["census"]
            based = f"`{c['based_on']}` plus " if c.get("based_on") else ""
            w(f"- `{name}`: {k['files']:,} files, {k['bytes'] / 1e6:,.0f} MB "
              f"({k['small_files']:,} small files < 256 KiB, {k['small_bytes'] / 1e6:.1f} MB; "
              f"{k['large_files']} large, {k['large_bytes'] / 1e6:,.0f} MB): {based}"
              f"{len(c['wheels'])} real wheels ({c['wheel_bytes'] / 1e6:,.0f} MB) fetched by "
              f"{c['pip']}" + (f", plus {c['small_responses_added']} small responses (2 files each)"
                                 if c["small_responses_added"] else ""))

    w(f"Run of {m.get('date_utc', '?')} (raw results: `{out}`, copied to "
      f"`bench/results/{out.name}/`).")
    w("")
    w("### Machine and conditions")
    w("")
    w(f"- CPU: {m.get('cpu', '?')}, `nproc` = {m.get('nproc', '?')}; memory {m.get('mem_total', '?')}; "
      f"kernel {m.get('kernel', '?')}")
    w(f"- Filesystem: {m.get('fs', '?')}; disk: {m.get('disk', '?')}")
    w(f"- {m.get('tar', '?')}; {m.get('zstd', '?')}; {m.get('gzip', '?')}; {m.get('hyperfine', '?')}")
    w(f"- cicache: {m.get('cicache_version', '?')} at commit {m.get('cicache_commit', '?')} "
      f"(`{m.get('cicache_bin', '?')}`)" + (f"; {m['cicache_origin']}" if m.get("cicache_origin") else ""))
    w(f"- Load average (1, 5, 15 min) at start: {m.get('load_start', '?')}; at end: "
      f"{m.get('load_end', '?')} (per case in `load.txt`)")
    w(f"- Runs per case: {m.get('runs', '?')} (tar -czf: {m.get('gz_runs', '?')}; 2 GB tree: "
      f"{m.get('big_runs', '?')}), interleaved in rounds after one warm-up round; page cache warm "
      "for every tool; user/sys are medians of the CPU seconds per run")
    w("")
    w("Corpora:")
    w("")
    for name in ("corpus-pip", "corpus-pip-2g", "delta-one-wheel"):
        corpus_line(name)
    w("")

    for s, title in (("base", "Main corpus (corpus-pip)"), ("big", "2 GB corpus (corpus-pip-2g)")):
        rows = sorted(((k, v) for k, v in res.items() if k.startswith(s + "-")),
                      key=lambda kv: (0 if "-save-" in kv[0] else 1, kv[0]))
        cname = "corpus-pip" if s == "base" else "corpus-pip-2g"
        cfile = out / f"{cname}.json"
        cbytes = json.loads(cfile.read_text())["census"]["bytes"] if cfile.exists() else None
        if not rows:
            continue
        w(f"### Medians: {title}")
        w("")
        w("| case | tool | median | min | max | runs | user | sys | MB/s |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for k, v in rows:
            case = re.sub(r"-(cicache|tar-zstd|zstd-tar|tar-gz|cp|nostate-cicache)$", "", k[len(s) + 1:])
            rate = (f"{cbytes / 1e6 / v['median']:.0f}"
                    if cbytes and not any(x in k for x in ("newkey", "match", "onewheel")) else "")
            w(f"| {case} | {md(v['name'])} | {fmt_s(v['median'])} | {fmt_s(v['min'])} | "
              f"{fmt_s(v['max'])} | {v['runs']} | {v['user']:.2f} s | {v['system']:.2f} s | {rate} |")
        w("")
        if any(k[0] == s for k in sz):
            w("Sizes: " + "; ".join(f"{what} {n / 1e6:,.0f} MB" for (ss, what), n in sz.items() if ss == s))
            w("")

    def med(key: str) -> float | None:
        return res[key]["median"] if key in res else None

    targets = [
        ("fresh save ≤ 1.0× tar+zstd", "base-save-fresh-cicache", "base-save-fresh-tar-zstd", 1.0),
        ("same tree, new key ≤ 0.1× tar+zstd", "base-save-newkey-cicache", "base-save-fresh-tar-zstd", 0.1),
        ("one wheel added ≤ 0.2× tar+zstd", "base-save-onewheel-cicache", "base-save-onewheel-tar-zstd", 0.2),
        ("restore into empty ≤ 1.0× zstd+tar", "base-restore-empty-cicache", "base-restore-empty-zstd-tar", 1.0),
        ("restore into empty ≤ 1.3× cp -a", "base-restore-empty-cicache", "base-restore-empty-cp", 1.3),
        ("restore onto matching ≤ 0.2× zstd+tar (into empty)", "base-restore-match-cicache",
         "base-restore-empty-zstd-tar", 0.2),
    ]
    info = [
        ("same tree, new key, no state file (rehash)", "base-save-newkey-nostate-cicache", "base-save-fresh-tar-zstd"),
        ("restore onto matching, no state file", "base-restore-match-nostate-cicache", "base-restore-empty-zstd-tar"),
        ("restore onto matching vs tar -x onto it", "base-restore-match-cicache", "base-restore-match-zstd-tar"),
        ("fresh save vs tar -czf", "base-save-fresh-cicache", "base-save-fresh-tar-gz"),
        ("fresh save vs cp -a", "base-save-fresh-cicache", "base-save-fresh-cp"),
        ("2 GB: fresh save vs tar+zstd", "big-save-fresh-cicache", "big-save-fresh-tar-zstd"),
        ("2 GB: restore into empty vs zstd+tar", "big-restore-empty-cicache", "big-restore-empty-zstd-tar"),
        ("2 GB: restore into empty vs cp -a", "big-restore-empty-cicache", "big-restore-empty-cp"),
    ]
    w("### Targets (issue 2)")
    w("")
    w("| target | cicache | peer | ratio | result |")
    w("|---|---:|---:|---:|---|")
    for label, a, b, limit in targets:
        ma, mb = med(a), med(b)
        if ma is None or mb is None:
            w(f"| {label} | {fmt_s(ma) if ma else 'not measured'} | "
              f"{fmt_s(mb) if mb else 'not measured'} | | NOT MEASURED |")
            continue
        r = ma / mb
        w(f"| {label} | {fmt_s(ma)} | {fmt_s(mb)} | {r:.2f}× | {'PASS' if r <= limit else 'FAIL'} |")
    for tool in ("save", "restore"):
        mem = maxrss(out, f"big-mem-{tool}-cicache")
        if mem is None:
            w(f"| peak memory of {tool}, 2 GB tree ≤ 100 MiB | not measured | | | NOT MEASURED |")
        else:
            w(f"| peak memory of {tool}, 2 GB tree ≤ 100 MiB | {mem[0]:.0f} MiB | | | "
              f"{'PASS' if mem[0] <= 100 else 'FAIL'} |")
    w("")
    w("Other ratios (no target):")
    w("")
    w("| comparison | cicache | peer | ratio |")
    w("|---|---:|---:|---:|")
    for label, a, b in info:
        ma, mb = med(a), med(b)
        if ma is not None and mb is not None:
            w(f"| {label} | {fmt_s(ma)} | {fmt_s(mb)} | {ma / mb:.2f}× |")
    w("")
    w("Peak memory (max RSS from `/usr/bin/time -v`, one run each, 2 GB tree; for a pipeline "
      "the largest process):")
    w("")
    w("| operation | max RSS | wall |")
    w("|---|---:|---:|")
    for name, label in (("big-mem-save-cicache", "cicache save (empty store)"),
                        ("big-mem-restore-cicache", "cicache restore (empty dir)"),
                        ("big-mem-save-tar-zstd", "tar -cf - | zstd -T0 -3"),
                        ("big-mem-restore-zstd-tar", "zstd -d | tar -x")):
        mem = maxrss(out, name)
        if mem:
            w(f"| {md(label)} | {mem[0]:.0f} MiB | {mem[1]} |")
    w("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("results", type=Path)
    ap.add_argument("--write", type=Path)
    ap.add_argument("--summary", nargs="+", metavar="CASE", help="one line per case, for the log")
    args = ap.parse_args()
    if args.summary:
        res = load(args.results)
        for name in args.summary:
            if name in res:
                v = res[name]
                print(f"  {name}: median {fmt_s(v['median'])} (min {fmt_s(v['min'])}, max "
                      f"{fmt_s(v['max'])}, {v['runs']} runs; user {v['user']:.2f} s, sys {v['system']:.2f} s)")
        return
    body = render(args.results)
    if not args.write:
        print(body)
        return
    block = f"{BEGIN}\n{body}\n{END}"
    if args.write.exists():
        text = args.write.read_text()
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = "# Benchmarks\n\n" + block + "\n"
    args.write.parent.mkdir(parents=True, exist_ok=True)
    args.write.write_text(text)
    print(f"report.py: wrote {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
