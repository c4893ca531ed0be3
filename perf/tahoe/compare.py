#!/usr/bin/env python3
"""Tahoe-LAFS 1.20 beside grapevine, same machine, same sitting, same shape.

Installs tahoe-lafs 1.20.0 from PyPI into a virtual environment (once),
starts an introducer, ten storage nodes and a client on loopback (3-of-10,
happy 7, as grapevine's defaults), waits until the client sees all ten
servers, then times `tahoe put` and `tahoe get` of one file of SIZE MiB
(random bytes, so no convergence or compression helps), RUNS times each.
Then it runs `grapevine-perf bench storage` with the same size and a store
on the same disk, RUNS times, and prints both with the ratios.

    python3 perf/tahoe/compare.py --size-mib 100 --runs 3 \
        --grapevine-perf target/release/grapevine-perf

Everything lives under --work (default: a new temporary directory), which is
removed at the end unless --keep is given. Nothing here is needed by CI.
"""

import argparse
import json
import os
import shutil
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

TAHOE_VERSION = "1.20.0"


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout


def venv(path):
    tahoe = os.path.join(path, "bin", "tahoe")
    if not os.path.exists(tahoe):
        sh(sys.executable, "-m", "venv", path)
        sh(os.path.join(path, "bin", "pip"), "install", "-q", f"tahoe-lafs=={TAHOE_VERSION}")
    version = sh(tahoe, "--version").strip()
    assert TAHOE_VERSION in version, version
    return tahoe


def wait_for(what, secs, cond):
    deadline = time.time() + secs
    while True:
        v = cond()
        if v:
            return v
        if time.time() > deadline:
            raise SystemExit(f"timed out after {secs} s waiting for {what}")
        time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--grapevine-perf", default="target/release/grapevine-perf",
                    help="command that takes `bench storage ...` (may include arguments)")
    ap.add_argument("--venv", default="target/tahoe-venv")
    ap.add_argument("--work", default=None)
    # Listening ports below Linux's ephemeral range (32768-60999 by default):
    # from 46100 on, the nodes' own outgoing connections (each node connects
    # to the introducer as soon as it starts) took a port a later node was to
    # listen on, twice in a row on 2026-12-05, and that node never came up.
    ap.add_argument("--base-port", type=int, default=30100,
                    help="first of 12 consecutive listening ports (keep them out of the ephemeral range)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    tahoe = venv(a.venv)
    work = a.work or tempfile.mkdtemp(prefix="gv-tahoe-")
    os.makedirs(work, exist_ok=True)
    procs = []

    def run_node(d):
        log = open(os.path.join(d, "run.log"), "w")
        # `tahoe run` exits when its stdin closes: hold it open.
        procs.append(subprocess.Popen([tahoe, "run", d], stdin=subprocess.PIPE, stdout=log, stderr=log))

    try:
        port = a.base_port
        intro = os.path.join(work, "introducer")
        sh(tahoe, "create-introducer", "--listen=tcp", f"--port=tcp:{port}:interface=127.0.0.1",
           f"--location=tcp:127.0.0.1:{port}", intro)
        run_node(intro)
        furl_file = os.path.join(intro, "private", "introducer.furl")
        furl = wait_for("the introducer's furl", 60,
                        lambda: os.path.exists(furl_file) and open(furl_file).read().strip())
        shape = ["--shares-needed=3", "--shares-happy=7", "--shares-total=10"]
        for i in range(10):
            port += 1
            d = os.path.join(work, f"storage{i}")
            sh(tahoe, "create-node", "--listen=tcp", f"--port=tcp:{port}:interface=127.0.0.1",
               f"--location=tcp:127.0.0.1:{port}", f"--introducer={furl}",
               f"--nickname=s{i}", "--webport=none", *shape, d)
            run_node(d)
        webport = port + 1
        client = os.path.join(work, "client")
        sh(tahoe, "create-client", f"--introducer={furl}", *shape,
           f"--webport=tcp:{webport}:interface=127.0.0.1", client)
        run_node(client)

        missing = ["all"]

        def connected():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{webport}/?t=json", timeout=5) as r:
                    j = json.load(r)
            except Exception:
                return None
            servers = j.get("servers", [])
            ok = [s for s in servers if s.get("connection_status", "").lower().startswith("connected")]
            missing[:] = [s.get("nickname", "?") for s in servers if s not in ok] or ["some"]
            return len(ok) >= 10

        try:
            wait_for("the client to connect to all ten storage servers", 180, connected)
        except SystemExit as e:
            raise SystemExit(f"{e} (not connected: {', '.join(missing)}; see {work}/*/run.log,"
                             " kept with --keep)")

        src = os.path.join(work, "input.bin")
        with open(src, "wb") as f:
            for _ in range(a.size_mib):
                f.write(os.urandom(1 << 20))
        size = a.size_mib << 20
        tput, tget = [], []
        for r in range(a.runs):
            # A fresh random prefix each run, so no run finds the last one's shares.
            with open(src, "r+b") as f:
                f.write(os.urandom(64))
            t0 = time.monotonic()
            cap = sh(tahoe, "-d", client, "put", src).strip().splitlines()[-1]
            tput.append(size / (time.monotonic() - t0) / 1e6)
            out = os.path.join(work, "output.bin")
            t0 = time.monotonic()
            sh(tahoe, "-d", client, "get", cap, out)
            tget.append(size / (time.monotonic() - t0) / 1e6)
            if not filecmp(src, out):
                raise SystemExit("tahoe get returned different bytes")
            os.remove(out)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()

    gput, gget, gceil = [], [], []
    store = os.path.join(work, "grapevine-store")
    for r in range(a.runs):
        os.makedirs(store, exist_ok=True)
        out = sh(*shlex.split(a.grapevine_perf), "bench", "storage", "--size",
                 f"{a.size_mib}MiB", "--dir", store, "--json")
        j = json.loads(out)
        gput.append(j["put_mb_s"])
        gget.append(j["get_mb_s"])
        # The ceiling measured around the run (`bench storage` of issue 22
        # on; older builds report none).
        gceil.append({k: j.get(k) for k in ("put_ceiling_mb_s", "get_ceiling_mb_s",
                                            "put_fraction", "get_fraction")})
        shutil.rmtree(store, ignore_errors=True)

    res = {
        "size_mib": a.size_mib,
        "runs": a.runs,
        "tahoe_version": TAHOE_VERSION,
        "tahoe_put_mb_s": tput,
        "tahoe_get_mb_s": tget,
        "grapevine_put_mb_s": gput,
        "grapevine_get_mb_s": gget,
        "grapevine_ceilings": gceil,
        "put_ratio_median": statistics.median(gput) / statistics.median(tput),
        "get_ratio_median": statistics.median(gget) / statistics.median(tget),
    }
    if a.json:
        print(json.dumps(res))
    else:
        f = lambda xs: ", ".join(f"{x:.1f}" for x in xs)
        print(f"{a.size_mib} MiB, 3-of-10, ten servers on loopback, {a.runs} runs each (MB/s)")
        print(f"  tahoe-lafs {TAHOE_VERSION}  put {f(tput)}   get {f(tget)}")
        print(f"  grapevine          put {f(gput)}   get {f(gget)}")
        print(f"  median ratio       put {res['put_ratio_median']:.1f}x   get {res['get_ratio_median']:.1f}x")
        for what in ("put", "get"):
            c = [x for x in gceil if x.get(f"{what}_ceiling_mb_s")]
            if c:
                print(f"  grapevine {what} ceiling (measured around each run) "
                      + ", ".join(f"{x[f'{what}_ceiling_mb_s']:.1f} ({100 * x[f'{what}_fraction']:.0f}%)"
                                  for x in c))
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


def filecmp(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


if __name__ == "__main__":
    main()
