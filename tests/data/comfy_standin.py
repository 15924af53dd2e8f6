"""A stand-in for ComfyUI's main.py, for supervisor tests: a tiny HTTP server on --port.

GET /system_stats answers 200 with its argv, pid, working folder and any GATEWAY_* variables
it was given (argv is under "system", as in ComfyUI's answer).
GET /exit?code=N answers, then exits with status N.
--crash N exits with status N at once; --ignore-sigterm ignores SIGTERM; --grandchild FILE
starts a long sleeping child (same process group) and writes its pid to FILE.
ComfyUI's own flags (--listen, --output-directory, ...) are accepted and ignored.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/system_stats":
            leaked = sorted(name for name in os.environ if name.startswith("GATEWAY_"))
            self._answer(200, {"system": {"argv": sys.argv, "pid": os.getpid(), "gateway_env": leaked,
                                          "cwd": os.getcwd()}, "devices": []})
        elif url.path == "/exit":
            code = int(parse_qs(url.query).get("code", ["0"])[0])
            self._answer(200, {"exiting": code})
            threading.Timer(0.05, os._exit, (code,)).start()
        else:
            self._answer(404, {})

    def _answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        print(format % args, flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--crash", type=int)
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--grandchild")
    args, _ = parser.parse_known_args()
    print(f"stand-in ComfyUI pid {os.getpid()} argv {sys.argv}", flush=True)
    if args.crash is not None:
        sys.exit(args.crash)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.grandchild:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(args.grandchild, "w") as f:
            f.write(str(child.pid))
    server = ThreadingHTTPServer((args.listen, args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
