"""A real-size app for bench/realapp: Python's own HTTP server and SQLite on a Debian base image.

GET / records a hit and answers the release and the number of hits; GET /healthz answers ok.
It stops at once on SIGTERM, as an app should.
"""
import http.server
import os
import signal
import sqlite3
import sys

DB = os.environ.get("DATA_DIR", "/app/data") + "/app.db"
VERSION = open("/app/VERSION").read().strip() if os.path.exists("/app/VERSION") else "?"


def db():
    conn = sqlite3.connect(DB)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS hits (id INTEGER PRIMARY KEY, v TEXT)")
    return conn


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/healthz":
            body = b"ok\n"
        else:
            conn = db()
            with conn:
                conn.execute("INSERT INTO hits (v) VALUES (?)", (VERSION,))
            n = conn.execute("SELECT COUNT(*) FROM hits").fetchone()[0]
            body = f"realapp {VERSION} hits={n}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
db().close()
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
