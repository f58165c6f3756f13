#!/usr/bin/env python3
"""Steady HTTP load against a local address until a stop file appears (or --seconds pass).

Each of --clients threads sends GET requests one after another on a keep-alive connection, and
records when it was sent, how long it took, and the outcome: the HTTP status, or the error
(reset, refused, timeout). Prints one JSON summary on stdout.

    load.py --url http://127.0.0.1:18401/ --host example.test --clients 8 --stop FILE
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
    retries = [0]
    start = time.monotonic()
    start_unix = time.time()
    done = threading.Event()

    def client():
        # One keep-alive connection per client, as a browser keeps one. A request on a reused
        # connection that the server had closed is sent once more on a new connection (as
        # browsers and Go's client do); any other failure counts. (A new connection for every
        # request would exhaust loopback ports with TIME_WAIT at these rates, and the SYN
        # retries that follow would show up as 3 s and 15 s "outages" of nobody's making.)
        conn = None
        while not done.is_set():
            t0 = time.monotonic()
            outcome = None
            for attempt in (1, 2):
                reused = conn is not None
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=a.timeout)
                try:
                    conn.request("GET", path, headers={"Host": a.host} if a.host else {})
                    r = conn.getresponse()
                    r.read()
                    outcome = str(r.status)
                    if r.will_close:
                        conn.close()
                        conn = None
                    break
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                    conn.close()
                    conn = None
                    outcome = type(e).__name__
                    if not reused:
                        break
                    with lock:
                        retries[0] += 1
                except Exception as e:  # refused, timeout: count
                    if conn is not None:
                        conn.close()
                    conn = None
                    outcome = type(e).__name__
                    break
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
    others = [(round(sent, 3), round(took * 1000), o) for sent, took, o in results
              if o not in ("200", "503")]
    print(json.dumps({
        "others_sample": others[:20],
        "started_unix": round(start_unix, 3),
        "requests": len(results),
        "counts": counts,
        "ok": counts.get("200", 0),
        "maintenance": counts.get("503", 0),
        "other": len(results) - counts.get("200", 0) - counts.get("503", 0),
        "longest_non_200_ms": round(longest * 1000),
        "max_latency_ms": round(max((t for _, t, _ in results), default=0) * 1000),
        "p50_latency_ms": percentile(results, 0.50),
        "p99_latency_ms": percentile(results, 0.99),
        "seconds": round(time.monotonic() - start, 2),
        # Requests sent once more on a new connection after a reused one had been closed by
        # the server (as browsers do): not counted as failures, said here.
        "retries": retries[0],
    }))

def percentile(results, q):
    took = sorted(t for _, t, _ in results)
    return round(took[min(len(took) - 1, int(q * len(took)))] * 1000, 1) if took else 0


if __name__ == "__main__":
    main()
