"""Appends one record of bench/e2e.sh (a build, or the cleanup job) to a JSONL file.

usage: record.py --out FILE --round N --strategy S --scenario SC [--wall SECONDS] [--rc N]
                 [--load L] [--store BEFORE AFTER] [--registry BEFORE AFTER]
                 [--index BEFORE AFTER] [--pulled BYTES] [--daemon-hwm KIB]
                 [--json CICACHE_JSON] [--time GNU_TIME_FILE]
                 [--log BUILD_LOG]
From the cicache --json document: the phase times and statuses; from `/usr/bin/time -v`:
the peak RSS; from the build log (BuildKit plain progress and pip's own lines): the steps
CACHED, the wheels pip downloaded and took from its cache.
"""

import argparse
import json
import os
import re
import sys


def read_json(path):
    if not path or not os.path.isfile(path) or os.path.getsize(path) == 0:
        return None
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as e:
        print(f"record.py: {path}: {e}", file=sys.stderr)
        return None


def max_rss_kib(path):
    if not path or not os.path.isfile(path):
        return None
    with open(path) as fh:
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", fh.read())
    return int(m.group(1)) if m else None


def log_facts(path):
    if not path or not os.path.isfile(path):
        return {}
    with open(path, errors="replace") as fh:
        text = fh.read()
    return {
        "steps_cached": len(re.findall(r"^#\d+ CACHED$", text, re.M)),
        "wheels_downloaded": len(re.findall(r"Downloading \S+\.whl", text)),
        "wheels_from_cache": len(re.findall(r"(?:Using cached|Processing /root/\.cache)\S* \S+\.whl", text)),
        "pip_ran": bool(re.search(r"Successfully installed", text)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--round", type=int, required=True)
    ap.add_argument("--strategy", required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--wall", type=float)
    ap.add_argument("--rc", type=int, default=0)
    ap.add_argument("--load", type=float)
    ap.add_argument("--store", nargs=2, type=int)
    ap.add_argument("--registry", nargs=2, type=int)
    ap.add_argument("--index", nargs=2, type=int)
    ap.add_argument("--pulled", type=int, help="bytes the registry served (GET) during the build")
    ap.add_argument("--daemon-hwm", type=int, help="peak RSS of the agent's dockerd (+ containerd), KiB")
    ap.add_argument("--repeat", type=int, default=1, help="which run of this scenario in its round it is (e2e.sh --reset)")
    ap.add_argument("--json")
    ap.add_argument("--time")
    ap.add_argument("--log")
    a = ap.parse_args()
    rec = {
        "round": a.round,
        "strategy": a.strategy,
        "scenario": a.scenario,
        "wall": a.wall,
        "rc": a.rc,
        "load1": a.load,
    }
    if a.repeat > 1:
        rec["repeat"] = a.repeat
    for name in ("store", "registry", "index"):
        v = getattr(a, name)
        if v:
            rec[f"{name}_before"], rec[f"{name}_after"] = v
            rec[f"{name}_delta"] = v[1] - v[0]
    rec["max_rss_kib"] = max_rss_kib(a.time)
    if a.pulled is not None:
        rec["registry_pulled"] = a.pulled
    if a.daemon_hwm:
        rec["daemon_hwm_kib"] = a.daemon_hwm
    doc = read_json(a.json)
    if doc is not None and a.scenario != "cleanup":
        rec["cicache_seconds"] = doc.get("seconds")
        rec["phases"] = {
            p["name"]: {"start": p.get("start"), "seconds": p.get("seconds"), "status": p.get("status"),
                        "message": p.get("message")}
            for p in doc.get("phases", [])
        }
        rec["warnings"] = doc.get("warnings", [])
        rest = doc.get("restore") or {}
        rec["restore_status"] = rest.get("status")
        save = doc.get("save") or {}
        rec["save_status"] = save.get("status")
    elif doc is not None:
        rec["docker_prune"] = doc.get("prune", doc)
    rec.update(log_facts(a.log))
    with open(a.out, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    short = {k: rec.get(k) for k in ("strategy", "scenario", "round", "wall", "rc", "load1")}
    if "phases" in rec:
        short["phases"] = {k: v["seconds"] for k, v in rec["phases"].items()}
    for k in ("store_delta", "registry_delta", "registry_pulled", "index_delta", "max_rss_kib", "daemon_hwm_kib", "steps_cached",
              "wheels_downloaded", "wheels_from_cache"):
        if rec.get(k) is not None:
            short[k] = rec[k]
    print("record:", json.dumps(short))


if __name__ == "__main__":
    main()
