"""nodeenv.py - start the test hub and shoald for end-to-end tests, and talk to both.

The binaries come from the environment (CTest sets them): SHOALD, SHOAL, and
SHOAL_SOURCE_DIR for tests/hub. Everything lives in one temporary directory; every wait
is bounded; processes are stopped by PID.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

SRC = os.environ.get("SHOAL_SOURCE_DIR",
                     os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
HUB_DIR = os.path.join(SRC, "tests", "hub")
SHOALD = os.environ.get("SHOALD", "shoald")
SHOAL = os.environ.get("SHOAL", "shoal")
WAIT_S = 60


def wait_until(pred, what, timeout=WAIT_S, step=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out waiting for " + what)


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Hub:
    """tests/hub/hub.py as a child process."""

    def __init__(self, root, faults=None):
        self.root = root
        ready = os.path.join(root, "hub.ready")
        args = [sys.executable, "-B", os.path.join(HUB_DIR, "hub.py"), "--root", root,
                "--ready-file", ready, "--max-lifetime", "1800"]
        if faults:
            args += ["--faults", json.dumps(faults)]
        self.log = open(os.path.join(root, "hub.log"), "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        info = wait_until(lambda: self._ready(ready), "the test hub")
        self.url = info["url"]
        self.port = info["port"]

    def _ready(self, path):
        if self.proc.poll() is not None:
            raise AssertionError("the test hub exited: see " + self.log.name)
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def make(self, repo, files, *extra):
        out = subprocess.run([sys.executable, "-B", os.path.join(HUB_DIR, "make_model.py"),
                              "--root", self.root, "--repo", repo, "--files", files, *extra],
                             check=True, capture_output=True, text=True, timeout=300)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"null")

    def stats(self):
        return self._call("GET", "/_test/stats")

    def reset(self):
        self._call("POST", "/_test/reset", {})

    def faults(self, faults):
        self._call("POST", "/_test/faults", faults)

    def cdn_bytes(self):
        return self.stats()["servers"]["cdn"]["bytes"]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


class Node:
    """shoald as a child process, with its data directory."""

    def __init__(self, root, hub_url, name="node", extra=()):
        self.dir = os.path.join(root, name)
        self.sock = os.path.join(self.dir, "shoald.sock")
        self.logpath = os.path.join(root, name + ".log")
        self.args = [SHOALD, "--data-dir", self.dir, "--hub", hub_url, "--http", "127.0.0.1:0",
                     "--listen", "127.0.0.1:0", "--log-level", "debug", *extra]
        self.proc = None
        self.start()

    def start(self):
        env = dict(os.environ)
        for k in ("HF_TOKEN", "HF_ENDPOINT", "HF_HOME", "HF_TOKEN_PATH"):
            env.pop(k, None)
        env["HOME"] = self.dir + ".home"  # no user token file
        self.log = open(self.logpath, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=self.log, env=env)
        wait_until(self._ready, "shoald to answer on its socket")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("shoald exited with %s: see %s" % (self.proc.returncode,
                                                                     self.logpath))
        r = subprocess.run([SHOAL, "--socket", self.sock, "status"], capture_output=True,
                           timeout=30)
        return r.returncode == 0

    def api(self, method, path, body=None):
        c = UnixHTTP(self.sock)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            data = r.read()
            return r.status, (json.loads(data) if data.startswith(b"{") else data.decode())
        finally:
            c.close()

    def shoal(self, *args, env=None, timeout=300):
        e = dict(os.environ)
        e.update(env or {})
        return subprocess.run([SHOAL, "--socket", self.sock, *args], capture_output=True,
                              text=True, env=e, timeout=timeout)

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def peer_addr(self):
        """The address its peer port listens on, from its log."""
        import re
        m = re.findall(r"peers: listening on (\S+)", self.log_text())
        if not m:
            raise AssertionError("no peer listening line in " + self.logpath)
        return m[-1]

    def log_text(self):
        with open(self.logpath, errors="replace") as f:
            return f.read()


def tmpdir():
    return tempfile.mkdtemp(prefix="shoal-e2e-")


def rmtree(d):
    shutil.rmtree(d, ignore_errors=True)
