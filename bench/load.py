#!/usr/bin/env python3
"""Steady HTTP load against a local address until a stop file appears (or --seconds pass).

Each of --clients threads sends GET requests one after another on a fresh connection, and
records when it was sent, how long it took, and the outcome: the HTTP status, or the error
(reset, refused, timeout). Prints one JSON summary on stdout.

    load.py --url http://127.0.0.1:18400/ --host example.test --clients 8 --stop FILE
"""
import argparse, http.client, json, os, threading, time, urllib.parse

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--host", help="Host header")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=600.0, help="hard limit")
    ap.add_argument("--stop", help="stop when this file exists")
    ap.add_argument("--timeout", type=float, default=15.0)
    a = ap.parse_args()
    u = urllib.parse.urlsplit(a.url)
    path = (u.path or "/") + ("?" + u.query if u.query else "")
    results, lock = [], threading.Lock()
    start = time.monotonic()
    done = threading.Event()

    def client():
        while not done.is_set():
            t0 = time.monotonic()
            try:
                c = http.client.HTTPConnection(u.hostname, u.port, timeout=a.timeout)
                c.request("GET", path, headers={"Host": a.host} if a.host else {})
                r = c.getresponse()
                r.read()
                outcome = str(r.status)
                c.close()
            except Exception as e:  # reset, refused, timeout: all count as "other"
                outcome = type(e).__name__
            t1 = time.monotonic()
            with lock:
                results.append((t0 - start, t1 - t0, outcome))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(a.clients)]
    for t in threads:
        t.start()
    while time.monotonic() - start < a.seconds:
        if a.stop and os.path.exists(a.stop):
            break
        time.sleep(0.02)
    done.set()
    for t in threads:
        t.join(a.timeout + 1)

    results.sort()
    counts = {}
    for _, _, o in results:
        counts[o] = counts.get(o, 0) + 1
    # The longest stretch of time in which no request sent got a 200.
    longest, stretch_start = 0.0, None
    for sent, took, o in results:
        if o != "200":
            if stretch_start is None:
                stretch_start = sent
            longest = max(longest, sent + took - stretch_start)
        else:
            stretch_start = None
    print(json.dumps({
        "requests": len(results),
        "counts": counts,
        "ok": counts.get("200", 0),
        "maintenance": counts.get("503", 0),
        "other": len(results) - counts.get("200", 0) - counts.get("503", 0),
        "longest_non_200_ms": round(longest * 1000),
        "max_latency_ms": round(max((t for _, t, _ in results), default=0) * 1000),
        "seconds": round(time.monotonic() - start, 2),
    }))

if __name__ == "__main__":
    main()
