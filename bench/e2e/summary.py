"""Summarizes a bench/e2e.sh run: medians per strategy and scenario, ratios, the targets (issue 7's
on Docker 20.10, issue 20's on the Docker 26 engines), phase times, bytes moved, peak memory,
what the cleanup job reclaimed; and a chart.

usage: summary.py --raw RAW_DIR --out SUMMARY_DIR [--svg docs/img/e2e.svg]
Writes SUMMARY_DIR/summary.md (the tables docs/BENCHMARKS.md shows), summary.json (the same
figures), runs.jsonl / cleanup.jsonl / machine.txt (copies of the raw records) and, with
--svg, a grouped bar chart (plain SVG written by hand: no dependencies).
"""

import argparse
import json
import os
import shutil
import statistics

# Every strategy bench/e2e.sh knows; main() keeps those the run measured.
ALL_STRATEGIES = ["none", "mount", "registry", "hand", "hand-args", "full", "full-nodir", "full-gzip1", "full-zstd"]
STRATEGIES = list(ALL_STRATEGIES)
LABEL = {
    "none": "no cache",
    "mount": "BuildKit cache mount only",
    "registry": "registry layer cache only",
    "hand": "registry cache by hand (buildx)",
    "full": "full cicache",
    "full-nodir": "cicache without the cache dir",
    "hand-args": "by hand with cicache's arguments",
    "full-gzip1": "full cicache, gzip level 1",
    "full-zstd": "full cicache, zstd",
}
SCENARIOS = ["cold", "warm-same", "warm-fresh", "rebuild", "code", "changed", "changed-ml"]
# Issue 7's scenarios (the targets); `code` is measured beside them.
TARGET_SCENARIOS = ["cold", "warm-same", "warm-fresh", "changed"]
SC_LABEL = {
    "cold": "cold (fresh agent, empty caches)",
    "warm-same": "warm, same agent",
    "warm-fresh": "warm, fresh agent",
    "rebuild": "warm, fresh agent, --rebuild (every step from the registry cache)",
    "code": "app code changed, fresh agent",
    "changed": "one requirement changed, fresh agent",
    "changed-ml": "one heavy (first-step) requirement changed, fresh agent",
}
CHART_LABEL = {
    "cold": ["cold", "(fresh agent, empty caches)"],
    "warm-same": ["warm", "same agent"],
    "warm-fresh": ["warm", "fresh agent"],
    "rebuild": ["warm, --rebuild", "fresh agent"],
    "code": ["app code changed", "fresh agent"],
    "changed": ["one requirement changed", "fresh agent"],
    "changed-ml": ["heavy requirement", "changed, fresh agent"],
}
COLOR = {"none": "#9e9e9e", "mount": "#f0a33a", "registry": "#5b8fd6", "hand": "#5b8fd6",
         "full": "#2e9e5b", "full-nodir": "#a3b18a", "hand-args": "#d4a373", "full-gzip1": "#7cc08e", "full-zstd": "#8e44ad"}
# The targets of the Docker 26 engines (issue 20), full cicache against the same run's cold build
# without any cache; the single-step app has one: its one pip step re-runs on a changed requirement.
TARGETS_26 = {"layered": {"warm-fresh": 0.01, "rebuild": 0.08, "code": 0.08, "changed": 0.12, "cold": 0.75},
              "single": {"changed": 0.6, "cold": 0.75}}
ENGINE_DESC = {
    "20.10": "Docker 20.10 (classic docker build, inline cache)",
    "26-graph": "Docker 26.1.5 + buildx 0.13.1, graph-driver store (overlay2)",
    "26-containerd": "Docker 26.1.5 + buildx 0.13.1, containerd image store",
}
# The app built (machine.txt `app:`, bench/e2e.sh --app); results from before the option are
# the single app's.
APP_DESC = {
    "single": "bench/e2e/app: the 15 wheels in one pip step",
    "layered": "bench/e2e/app-layered: the 12 numeric/ML wheels in one pip step, the service's own 3 "
               "(cryptography, grpcio, pillow) in a second",
}
APP_CHART = {"single": "in one pip step", "layered": "in two pip steps"}
PHASES = ["check", "prefetch", "restore", "inject", "build", "push", "cache-export", "extract", "save"]


def load(path):
    if not os.path.isfile(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_s(x):
    return "" if x is None else (f"{x:.2f} s" if x < 1 else f"{x:.1f} s")


def rng(x):
    return f"{x:.2f}" if x < 1 else (f"{x:.1f}" if x < 10 else f"{x:.0f}")


def ratio(x):
    """A ratio with enough digits to tell small ones apart (0.0015× rather than 0.00×)."""
    return f"{x:.2f}×" if x >= 0.1 else f"{x:.2g}×"


def fmt_mb(x):
    return "" if x is None else f"{round(x / 1e6) + 0:,} MB"


def present(cells):
    """The scenarios a run measured (changed-ml only with --scenarios)."""
    return [sc for sc in SCENARIOS if any((s, sc) in cells for s in STRATEGIES)]


def svg_chart(cells, cold_full, path, subtitle, app, engine="20.10"):
    w, h = 900, 460
    left, right, top, bottom = 70, 20, 72, 90
    pw, ph = w - left - right, h - top - bottom
    vals = [v["median"] for v in cells.values() if v["median"] is not None]
    vmax = max(vals) if vals else 1
    step = 20 if vmax <= 160 else 50
    ymax = step * (int(vmax / step) + 1)
    y = lambda v: top + ph - v / ymax * ph  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        'font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="22" text-anchor="middle" font-size="16" font-weight="bold">'
        f"Python app, 308 MB of wheels{' ' + APP_CHART[app] if app in APP_CHART else ''}: "
        "median wall time</text>",
        f'<text x="{w / 2}" y="40" text-anchor="middle" fill="#555">'
        f"{ENGINE_DESC.get(engine, engine)}; {subtitle}; lower is better</text>",
        f'<text x="{w / 2}" y="56" text-anchor="middle" fill="#c62828" font-size="11">'
        f"dashed: the target, a fraction of the cold build "
        f"{'without any cache' if engine != '20.10' else 'with full cicache'}</text>",
    ]
    v = 0
    while v <= ymax:
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v} s</text>')
        v += step
    scenarios = present(cells)
    gw = pw / len(scenarios)
    bw = gw * 0.8 / len(STRATEGIES)
    for gi, sc in enumerate(scenarios):
        gx = left + gi * gw + gw * 0.1
        for si, s in enumerate(STRATEGIES):
            c = cells.get((s, sc))
            if not c or c["median"] is None:
                continue
            m = c["median"]
            x = gx + si * bw
            out.append(
                f'<rect x="{x:.1f}" y="{y(m):.1f}" width="{bw - 3:.1f}" height="{y(0) - y(m):.1f}" '
                f'fill="{COLOR[s]}"><title>{LABEL[s]}, {SC_LABEL[sc]}: {m:.1f} s</title></rect>'
            )
            out.append(f'<text x="{x + (bw - 3) / 2:.1f}" y="{y(m) - 4:.1f}" text-anchor="middle" font-size="11">{f"{m:.1f}" if m < 10 else f"{m:.0f}"}</text>')
        if engine == "20.10":
            target = {"warm-fresh": 0.1, "changed": 0.25}.get(sc)
        else:
            target = TARGETS_26.get(app, {}).get(sc)
        if target and cold_full:
            t = cold_full * target
            out.append(
                f'<line x1="{gx - 4:.1f}" x2="{gx + gw * 0.8 + 4:.1f}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                'stroke="#c62828" stroke-width="2" stroke-dasharray="6,4"/>'
            )
            # The label above the group's tallest bar (and its figure), not across the bars.
            tallest = max((c["median"] for (s2, sc2), c in cells.items()
                           if sc2 == sc and c["median"] is not None), default=t)
            ly = min(y(t), y(tallest) - 16) - 5
            out.append(
                f'<text x="{gx + gw * 0.4:.1f}" y="{ly:.1f}" text-anchor="middle" fill="#c62828" font-size="11" '
                'stroke="white" stroke-width="3" paint-order="stroke">'
                f"target {t:.0f} s ({target}×)</text>"
            )
        for li, text in enumerate(CHART_LABEL[sc]):
            out.append(f'<text x="{gx + gw * 0.4:.1f}" y="{top + ph + 18 + li * 15}" text-anchor="middle">{text}</text>')
    lx = left
    for s in STRATEGIES:
        out.append(f'<rect x="{lx}" y="{h - 28}" width="14" height="14" fill="{COLOR[s]}"/>')
        out.append(f'<text x="{lx + 19}" y="{h - 17}">{LABEL[s]}</text>')
        lx += 30 + 7.2 * len(LABEL[s])
    out.append("</svg>")
    with open(path, "w") as fh:
        fh.write("\n".join(out) + "\n")


def add_target(targets, name, value, limit, ref):
    """Appends one target row: value / ref against limit (NOT MEASURED without both)."""
    if value is None or ref is None:
        targets.append({"target": name, "result": "NOT MEASURED"})
        return
    r = value / ref
    targets.append({"target": name, "value": value, "ref": ref, "ratio": r, "limit": limit,
                    "result": "PASS" if r <= limit else "FAIL"})


def targets_2010(cells, cold_none, cold_full, targets, md):
    """Issue 7's targets (Docker 20.10), against full cicache's own cold build."""
    wf = cells.get(("full", "warm-fresh"), {}).get("median")
    ch = cells.get(("full", "changed"), {}).get("median")
    add_target(targets, "warm, fresh agent ≤ 0.1× cold (full cicache)", wf, 0.1, cold_full)
    add_target(targets, "one requirement changed ≤ 0.25× cold (full cicache)", ch, 0.25, cold_full)
    md.append("Targets (issue 7), against full cicache's own cold build; the ratio to the cold build "
              "without any cache is in brackets:")
    md.append("")
    md.append("| target | full cicache | cold | ratio | result |")
    md.append("|---|---:|---:|---:|---|")
    for t in targets:
        if "ratio" in t:
            extra = f" ({ratio(t['value'] / cold_none)} no-cache cold)" if cold_none else ""
            md.append(f"| {t['target']} | {fmt_s(t['value'])} | {fmt_s(t['ref'])} | {ratio(t['ratio'])}{extra} | {t['result']} |")
        else:
            md.append(f"| {t['target']} | | | | {t['result']} |")
    ahead = []
    for sc in TARGET_SCENARIOS:
        f = cells.get(("full", sc), {}).get("median")
        others = {s: cells.get((s, sc), {}).get("median") for s in STRATEGIES if s != "full"}
        beaten = [s for s, v in others.items() if v is not None and f is not None and v <= f]
        if f is None or all(v is None for v in others.values()):
            res = "NOT MEASURED"
        else:
            res = "PASS" if not beaten else "FAIL"
        ahead.append({"scenario": sc, "full": f, "others": others, "result": res, "not_ahead_of": beaten})
        best = min((v for v in others.values() if v is not None), default=None)
        md.append(f"| full cicache ahead of every partial strategy: {SC_LABEL[sc]} | {fmt_s(f)} | "
                  f"best partial {fmt_s(best)} | {'' if not best or f is None else ratio(f / best)} | "
                  f"{res}{'' if not beaten else ' (not ahead of ' + ', '.join(LABEL[b] for b in beaten) + ')'} |")
    return ahead


def targets_26(cells, cold_none, app, targets, md):
    """Issue 20's targets (the Docker 26 engines): each full cicache strategy against the same
    run's cold build without any cache, and ahead of every other strategy in every scenario (the
    no-cache strategy's figure in a warm scenario is its cold build: it has nothing to reuse)."""
    limits = TARGETS_26.get(app, {})
    fulls = [s for s in ("full", "full-gzip1", "full-zstd") if s in STRATEGIES]
    for s in fulls:
        for sc, limit in limits.items():
            add_target(targets, f"{SC_LABEL[sc]} ≤ {limit}× cold without cache ({LABEL[s]})",
                       cells.get((s, sc), {}).get("median"), limit, cold_none)
    md.append("Targets (issue 20), against the same run's cold build without any cache:")
    md.append("")
    md.append("| target | value | cold, no cache | ratio | result |")
    md.append("|---|---:|---:|---:|---|")
    for t in targets:
        if "ratio" in t:
            md.append(f"| {t['target']} | {fmt_s(t['value'])} | {fmt_s(t['ref'])} | {ratio(t['ratio'])} | {t['result']} |")
        else:
            md.append(f"| {t['target']} | | | | {t['result']} |")
    ahead = []
    for s in fulls:
        for sc in SCENARIOS:
            f = cells.get((s, sc), {}).get("median")
            if f is None:
                continue
            others = {}
            for o in STRATEGIES:
                if o in fulls:
                    continue
                v = cells.get((o, sc), {}).get("median")
                if v is None and o == "none":
                    v = cold_none
                others[o] = v
            beaten = [o for o, v in others.items() if v is not None and v <= f]
            res = "NOT MEASURED" if all(v is None for v in others.values()) else ("PASS" if not beaten else "FAIL")
            ahead.append({"strategy": s, "scenario": sc, "full": f, "others": others, "result": res,
                          "not_ahead_of": beaten})
            best = min((v for v in others.values() if v is not None), default=None)
            md.append(f"| {LABEL[s]} ahead of every other strategy: {SC_LABEL[sc]} | {fmt_s(f)} | "
                      f"best other {fmt_s(best)} | {'' if not best else ratio(f / best)} | "
                      f"{res}{'' if not beaten else ' (not ahead of ' + ', '.join(LABEL[b] for b in beaten) + ')'} |")
    return ahead


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--svg")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    runs = [r for r in load(os.path.join(a.raw, "runs.jsonl"))]
    cleanup = load(os.path.join(a.raw, "cleanup.jsonl"))
    machine = {}
    mpath = os.path.join(a.raw, "machine.txt")
    if os.path.isfile(mpath):
        with open(mpath) as fh:
            for line in fh:
                k, _, v = line.partition(": ")
                machine[k.strip()] = v.strip()
    machine.setdefault("app", "single")
    machine.setdefault("engine", "20.10")
    app = machine["app"]
    engine = machine["engine"]
    for f in ("runs.jsonl", "cleanup.jsonl", "machine.txt"):
        if os.path.isfile(os.path.join(a.raw, f)):
            shutil.copy(os.path.join(a.raw, f), os.path.join(a.out, f))

    for r in runs:  # bytes read from the store: the restore object of cicache's --json
        if "store_read" not in r:
            rep = f"-{r['repeat']}" if r.get("repeat", 1) > 1 else ""  # e2e.sh --reset
            jp = os.path.join(a.raw, "logs", f"{r['strategy']}-r{r['round']}-{r['scenario']}{rep}.json")
            doc = None
            if os.path.isfile(jp) and os.path.getsize(jp) > 0:
                with open(jp) as fh:
                    try:
                        doc = json.load(fh)
                    except ValueError:
                        doc = None
            rest = (doc or {}).get("restore") or {}
            r["store_read"] = rest.get("bytes_downloaded", 0) if doc else None
    STRATEGIES[:] = [s for s in ALL_STRATEGIES if any(r["strategy"] == s for r in runs)]
    failed = [r for r in runs if r.get("rc") != 0]
    ok = [r for r in runs if r.get("rc") == 0]
    cells = {}
    for s in STRATEGIES:
        for sc in SCENARIOS:
            rs = [r for r in ok if r["strategy"] == s and r["scenario"] == sc]
            if not rs:
                continue
            walls = [r["wall"] for r in rs]
            cells[(s, sc)] = {
                "n": len(rs),
                "median": med(walls),
                "min": min(walls),
                "max": max(walls),
                "phases": {p: med([(r.get("phases") or {}).get(p, {}).get("seconds") for r in rs]) for p in PHASES},
                "store_delta": med([r.get("store_delta") for r in rs]),
                "store_read": med([r.get("store_read") for r in rs]),
                "registry_delta": med([r.get("registry_delta") for r in rs]),
                "registry_pulled": med([r.get("registry_pulled") for r in rs]),
                "daemon_hwm_kib": max([r.get("daemon_hwm_kib") or 0 for r in rs]) or None,
                "index_delta": med([r.get("index_delta") for r in rs]),
                "max_rss_kib": max([r.get("max_rss_kib") or 0 for r in rs]) or None,
                "steps_cached": med([r.get("steps_cached") for r in rs]),
                "wheels_downloaded": med([r.get("wheels_downloaded") for r in rs]),
                "wheels_from_cache": med([r.get("wheels_from_cache") for r in rs]),
                "pip_ran": sum(1 for r in rs if r.get("pip_ran")),
                "load1": [r.get("load1") for r in rs],
            }
    cold = {s: cells.get((s, "cold"), {}).get("median") for s in STRATEGIES}
    cold_none = cold.get("none")
    cold_full = cold.get("full")
    if engine != "20.10":
        # The 26 engines' references: the cold build without any cache (bench/e2e.sh runs the
        # none strategy cold only: without a cache every scenario is that build).
        cold_full = cold_none
    loads = [r.get("load1") for r in runs if r.get("load1") is not None]

    scenarios = present(cells)
    # Runs before `tree:` was recorded said "+ working tree" whether or not it was dirty.
    commit = (machine.get("commits")
              or (f"commit {machine['tree']}" if "tree" in machine else None)
              or f"commit {machine.get('commit', '?')[:7]} + working tree")
    md = []
    md.append(f"Engine: {ENGINE_DESC.get(engine, engine)}. "
              f"App: {app} ({APP_DESC.get(app, 'bench/e2e.sh --app ' + app)}). "
              f"Machine: {machine.get('nproc', '?')} cores ({machine.get('cpu', '?')}), "
              f"{int(machine.get('memory', '0 ').split()[0]) / 2**30:.0f} GiB memory, "
              f"1-minute load average {min(loads):.1f} to {max(loads):.1f} at the build starts "
              f"(median {statistics.median(loads):.1f}); {machine.get('docker', '')}; "
              f"registry {machine.get('registry', '')}; {machine.get('cicache', '')} "
              f"({commit}). "
              f"Index bandwidth {machine.get('rate', '?')}/s; wheels: {machine.get('wheels', '?')}. "
              f"Run started {machine.get('date', '?')}; {machine.get('runs', '?')} rounds."
              + (" Store and registry put back before each scenario after the first (--reset)."
                 if machine.get("reset") == "1" else "")
              + (f" Idle {machine['pause']} s before each build (--pause)."
                 if machine.get("pause", "0") != "0" else "")
              + (" Kernel caches dropped before each build (--drop-caches)."
                 if machine.get("drop-caches") == "1" else ""))
    md.append("")
    md.append("Median wall time (min to max), each build from a clean workspace, push included:")
    md.append("")
    md.append("| scenario | " + " | ".join(LABEL[s] for s in STRATEGIES) + " |")
    md.append("|---|" + "---:|" * len(STRATEGIES))
    for sc in scenarios:
        row = [SC_LABEL[sc]]
        for s in STRATEGIES:
            c = cells.get((s, sc))
            row.append(f"{fmt_s(c['median'])} ({rng(c['min'])} to {rng(c['max'])}, n={c['n']})" if c else "")
        md.append("| " + " | ".join(row) + " |")
    md.append("")
    md.append("Ratio to the same strategy's cold build / to the cold build without any cache:")
    md.append("")
    md.append("| scenario | " + " | ".join(LABEL[s] for s in STRATEGIES) + " |")
    md.append("|---|" + "---:|" * len(STRATEGIES))
    for sc in scenarios[1:]:
        row = [SC_LABEL[sc]]
        for s in STRATEGIES:
            c = cells.get((s, sc))
            if c and cold.get(s) and cold_none:
                row.append(f"{ratio(c['median'] / cold[s])} / {ratio(c['median'] / cold_none)}")
            else:
                row.append("")
        md.append("| " + " | ".join(row) + " |")
    md.append("")

    targets = []
    if engine == "20.10":
        ahead = targets_2010(cells, cold_none, cold_full, targets, md)
    else:
        ahead = targets_26(cells, cold_none, app, targets, md)
    md.append("")

    md.append("Where the time goes: median seconds per `cicache build` phase (`--json`), and the wall time:")
    md.append("")
    md.append("| strategy, scenario | " + " | ".join(PHASES) + " | wall |")
    md.append("|---|" + "---:|" * (len(PHASES) + 1))
    for s in ("registry", "full", "full-nodir", "full-gzip1", "full-zstd"):
        for sc in scenarios:
            c = cells.get((s, sc))
            if not c:
                continue
            ph = [("" if c["phases"].get(p) is None else f"{c['phases'][p]:.1f}") for p in PHASES]
            md.append(f"| {LABEL[s]}, {sc} | " + " | ".join(ph) + f" | {c['median']:.1f} |")
    md.append("")
    md.append("Bytes moved (medians): wheel bytes pip fetched from the index, growth of the store and of "
              "the registry's storage (pushed), bytes the registry served (pulled: its access log's GET "
              "responses), bytes restored from the store; what pip did (wheels downloaded / taken from its cache, "
              "Dockerfile steps CACHED); peak RSS of cicache (`/usr/bin/time -v`) and of the agent's daemons "
              "(dockerd with its BuildKit, and containerd on the 26 engines: VmHWM), max over runs:")
    md.append("")
    md.append("| strategy, scenario | from index | to store | from store | to registry | from registry | pip step | downloaded / from cache | steps CACHED | cicache peak RSS | daemons peak RSS |")
    md.append("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    for s in STRATEGIES:
        for sc in scenarios:
            c = cells.get((s, sc))
            if not c:
                continue
            rss = "" if not c["max_rss_kib"] else f"{c['max_rss_kib'] / 1024:.0f} MiB"
            drss = "" if not c.get("daemon_hwm_kib") else f"{c['daemon_hwm_kib'] / 1024:.0f} MiB"
            pip = f"ran {c['pip_ran']}/{c['n']}"
            md.append(f"| {LABEL[s]}, {sc} | {fmt_mb(c['index_delta'])} | {fmt_mb(c['store_delta'])} | "
                      f"{fmt_mb(c['store_read'])} | {fmt_mb(c['registry_delta'])} | {fmt_mb(c.get('registry_pulled'))} | "
                      f"{pip} | {c['wheels_downloaded']:.0f} / {c['wheels_from_cache']:.0f} | "
                      f"{c['steps_cached']:.0f} | {rss} | {drss} |")
    md.append("")
    if cleanup:
        md.append("The cleanup job after the scenarios (medians over rounds): `cicache prune --max-unused 0s --keep-last 1` "
                  "on the store, `cicache registry gc --max-age 0s --untagged` then `docker-registry "
                  "garbage-collect --delete-untagged`, `cicache docker prune` on the last agent:")
        md.append("")
        md.append("| strategy | store before | store freed | registry before | registry freed | builder cache freed |")
        md.append("|---|---:|---:|---:|---:|---:|")
        for s in STRATEGIES:
            rs = [r for r in cleanup if r["strategy"] == s]
            if not rs:
                continue
            dp = med([(r.get("docker_prune") or {}).get("reclaimed_bytes") for r in rs])
            md.append(f"| {LABEL[s]} | {fmt_mb(med([r.get('store_before') for r in rs]))} | "
                      f"{fmt_mb(med([-r.get('store_delta', 0) for r in rs]))} | "
                      f"{fmt_mb(med([r.get('registry_before') for r in rs]))} | "
                      f"{fmt_mb(med([-r.get('registry_delta', 0) for r in rs]))} | {fmt_mb(dp)} |")
        md.append("")
    if failed:
        md.append(f"Failed builds (left out of the medians): " + ", ".join(
            f"{r['strategy']}/{r['scenario']} round {r['round']} (exit {r['rc']})" for r in failed))
        md.append("")
    with open(os.path.join(a.out, "summary.md"), "w") as fh:
        fh.write("\n".join(md))
    doc = {
        "machine": machine,
        "cells": {f"{s}/{sc}": c for (s, sc), c in cells.items()},
        "targets": targets,
        "full_ahead": ahead,
        "load1": {"min": min(loads), "max": max(loads), "median": statistics.median(loads)} if loads else None,
        "failed": failed,
    }
    with open(os.path.join(a.out, "summary.json"), "w") as fh:
        json.dump(doc, fh, indent=1)
    if a.svg:
        sub = (f"bench/e2e.sh, {machine.get('runs', '?')} rounds, index at {machine.get('rate', '?')}/s, "
               f"{machine.get('nproc', '?')} cores")
        svg_chart(cells, cold_full, a.svg, sub, app, engine)
    print("\n".join(md))


if __name__ == "__main__":
    main()
