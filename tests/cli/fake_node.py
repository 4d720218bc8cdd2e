#!/usr/bin/env python3
"""fake_node.py - a stand-in for shoald's control API (docs/control-api.md) on a unix
socket, for testing the shoal tool's own behaviour without a real node.

Usage: fake_node.py SOCKET LOG [--status-pad BYTES]

It answers like the node would, with canned but coherent data, and checks requests
the way the node does (unknown fields refused, paths absolute, Content-Type JSON). It
appends every request it receives to LOG, one JSON object per line
({"method", "path", "content_type", "body"}), so that tests can check what the tool
sent. Repositories it knows:

  org/good    a pull that resolves, fetches three files over a few polls, exports,
              and ends done
  org/bad     a pull that ends failed (a sha256 mismatch)
  org/vanish  a pull during which the node dies (no answer, socket gone)
  other       404 {"error": ...}, as for a repository the Hub does not have

--status-pad makes GET /v1/status answer with that many bytes of padding, to test
the tool's limit on the size of answers.
"""
import argparse
import http.server
import json
import os
import socketserver
import sys
import threading

COMMIT = "0123456789abcdef0123456789abcdef01234567"
GIB = 1 << 30
PULL_FIELDS = {"repo", "repo_type", "revision", "include", "exclude", "cache_dir", "local_dir"}
REPO_TYPES = ("model", "dataset", "space")
FILES = [("config.json", 712), ("model.safetensors", 3 * GIB), ("sub/tokenizer.json", 2048)]


class BadRequest(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class Pull:
    """One pull; each GET moves it one step along its script."""

    def __init__(self, pull_id, req):
        self.id = pull_id
        self.req = req
        self.step = 0
        self.repo = req["repo"]

    def advance(self):
        self.step += 1

    def _files(self):
        s, bad = self.step, self.repo == "org/bad"
        # (state, bytes_done) of each file at each step.
        if s == 0:
            return [("queued", 0)] * 3
        if bad:
            model = ("fetching", GIB) if s == 1 else ("failed", GIB)
            return [("stored", 712), model, ("queued", 0)]
        if s == 1:
            return [("stored", 712), ("fetching", GIB), ("fetching", 1024)]
        if s == 2:
            return [("stored", 712), ("verifying", 3 * GIB), ("stored", 2048)]
        return [("stored", 712), ("stored", 3 * GIB), ("stored", 2048)]

    def state(self):
        if self.step == 0:
            return "resolving"
        if self.repo == "org/bad":
            return "fetching" if self.step == 1 else "failed"
        return ["fetching", "fetching", "exporting"][self.step - 1] if self.step < 4 else "done"

    def export_dir(self):
        if "local_dir" in self.req:
            return self.req["local_dir"]
        folder = "%ss--%s" % (self.req.get("repo_type", "model"), self.repo.replace("/", "--"))
        return os.path.join(self.req["cache_dir"], folder)

    def view(self, with_files=True):
        state, files = self.state(), self._files()
        resolved = self.step > 0
        out = {
            "id": self.id, "repo": self.repo,
            "repo_type": self.req.get("repo_type", "model"),
            "revision": self.req.get("revision", "main"),
            "commit": COMMIT if resolved else None,
            "state": state,
            "error": "model.safetensors: sha256 mismatch with the Hub's" if state == "failed"
            else None,
            "files_total": len(FILES) if resolved else 0,
            "files_done": sum(1 for f in files if f[0] == "stored"),
            "bytes_total": sum(size for _, size in FILES) if resolved else 0,
            "bytes_done": sum(done for _, done in files),
            "bytes_fetched": sum(done for _, done in files),
            "elapsed_ms": 1000 * self.step + 250,
            "export": {"dir": self.export_dir(),
                       "files_written": 3 if state == "done" else 0, "files_kept": 0},
        }
        if with_files:
            out["files"] = [{"path": path, "size": size, "bytes_done": done, "state": st}
                            for (path, size), (st, done) in zip(FILES, files)]
        return out


class Node:
    def __init__(self, log_path, status_pad):
        self.lock = threading.Lock()
        self.log_path = log_path
        self.status_pad = status_pad
        self.pulls = {}
        self.next_id = 1

    def record(self, method, path, content_type, body):
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps({"method": method, "path": path, "content_type": content_type,
                                "body": body}) + "\n")

    # --- the endpoints ---------------------------------------------------------------

    def status(self):
        pulls = list(self.pulls.values())
        states = [p.state() for p in pulls]
        ans = {"node_id": "k3v9x2fakefakefake", "version": "0.1.0", "data_dir": "/var/lib/shoal",
               "uptime_s": 3725,
               "hub": {"endpoint": "https://huggingface.co", "requests": 3, "bytes": 5 * GIB,
                       "retries": 1, "errors": 0, "in_flight": 0},
               "store": {"files": 4, "complete_files": 3, "chunks": 812,
                         "logical_bytes": 3 * GIB + 2760, "physical_bytes": 3 * GIB,
                         "quota": 0, "min_free": GIB},
               "pulls": {"active": sum(s not in ("done", "failed") for s in states),
                         "done": states.count("done"), "failed": states.count("failed")}}
        if self.status_pad:
            ans["pad"] = "x" * self.status_pad
        return 200, ans

    def start_pull(self, body):
        check_fields(body, PULL_FIELDS)
        repo = body.get("repo")
        if not isinstance(repo, str) or not repo:
            raise BadRequest(400, "repo: a repository name is required")
        if body.get("repo_type", "model") not in REPO_TYPES:
            raise BadRequest(400, "repo_type: model, dataset or space")
        for key in ("include", "exclude"):
            v = body.get(key, [])
            if not isinstance(v, list) or not all(isinstance(g, str) for g in v):
                raise BadRequest(400, key + ": a list of globs")
        if ("cache_dir" in body) == ("local_dir" in body):
            raise BadRequest(400, "exactly one of cache_dir and local_dir")
        target = body.get("cache_dir", body.get("local_dir"))
        if not isinstance(target, str) or not target.startswith("/"):
            raise BadRequest(400, "cache_dir/local_dir: an absolute path")
        if repo not in ("org/good", "org/bad", "org/vanish"):
            raise BadRequest(404, "%s: no such repository on the Hub" % repo)
        key = json.dumps(body, sort_keys=True)
        for p in self.pulls.values():   # the same pull, still running: join it
            if json.dumps(p.req, sort_keys=True) == key and p.state() not in ("done", "failed"):
                return 202, p.view()
        p = Pull(str(self.next_id), body)
        self.next_id += 1
        self.pulls[p.id] = p
        return 202, p.view()

    def get_pull(self, pull_id):
        p = self.pulls.get(pull_id)
        if not p:
            raise BadRequest(404, "no pull %s" % pull_id)
        if p.repo == "org/vanish":
            die()
        p.advance()
        return 200, p.view()

    def files(self):
        return 200, {
            "snapshots": [{"repo": "org/good", "repo_type": "model", "commit": COMMIT,
                           "pinned": True, "refs": ["main", "v1.0"],
                           "files": [{"path": "config.json", "size": 712, "sha256": "a" * 64,
                                      "etag": "b" * 40, "complete": True},
                                     {"path": "model.safetensors", "size": 3 * GIB,
                                      "sha256": "c" * 64, "etag": "c" * 64,
                                      "complete": False}]}],
            "files": [{"sha256": "a" * 64, "size": 712, "complete": True, "pieces": 1},
                      {"sha256": "c" * 64, "size": 3 * GIB, "complete": False, "pieces": 192},
                      {"sha256": "d" * 64, "size": 2048, "complete": True, "pieces": 1}],
            "totals": {"files": 3, "complete_files": 2, "chunks": 812,
                       "logical_bytes": 3 * GIB + 2760, "physical_bytes": 3 * GIB},
        }

    def imports(self, body):
        check_fields(body, {"dir", "repo", "repo_type"})
        d = body.get("dir")
        if not isinstance(d, str) or not d.startswith("/"):
            raise BadRequest(400, "dir: an absolute path")
        if not os.path.isdir(d):
            raise BadRequest(400, "dir: %s is not a directory" % d)
        if not isinstance(body.get("repo"), str) or not body["repo"]:
            raise BadRequest(400, "repo: a repository name is required")
        sizes = [os.path.getsize(os.path.join(top, name))
                 for top, _, names in os.walk(d) for name in names]
        return 200, {"repo": body["repo"], "repo_type": body.get("repo_type", "model"),
                     "commit": "f" * 40, "files": len(sizes), "bytes": sum(sizes), "skipped": 0}

    def rm(self, body):
        check_fields(body, {"repo", "repo_type", "revision"})
        if body.get("repo") != "org/good":
            raise BadRequest(404, "no snapshot of %s matches" % body.get("repo"))
        return 200, {"removed_snapshots": 1 if "revision" in body else 2, "removed_files": 3}

    def gc(self, body):
        check_fields(body, set())
        return 200, {"removed_files": 1}

    def route(self, method, path, body):
        if method == "GET" and path == "/v1/status":
            return self.status()
        if method == "GET" and path == "/v1/files":
            return self.files()
        if method == "GET" and path == "/v1/pulls":
            return 200, {"pulls": [p.view(False) for p in self.pulls.values()]}
        if method == "GET" and path.startswith("/v1/pulls/"):
            return self.get_pull(path[len("/v1/pulls/"):])
        posts = {"/v1/pulls": self.start_pull, "/v1/imports": self.imports,
                 "/v1/rm": self.rm, "/v1/gc": self.gc}
        if method == "POST" and path in posts:
            if not isinstance(body, dict):
                raise BadRequest(400, "the body must be a JSON object")
            return posts[path](body)
        raise BadRequest(404, "no such endpoint: %s %s" % (method, path))


def check_fields(body, known):
    for k in body:
        if k not in known:
            raise BadRequest(400, "unknown field '%s'" % k)


def die():
    """The node goes away mid-request: no answer, no socket."""
    os.unlink(SERVER.server_address)
    os._exit(0)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, as the node does

    def address_string(self):
        return "unix"

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method):
        n = int(self.headers.get("Content-Length") or 0)
        if n > 1 << 20:
            self.close_connection = True
            return self._answer(413, {"error": "the body is over 1 MiB"})
        raw = self.rfile.read(n) if n else b""
        ctype = self.headers.get("Content-Type")
        body = None
        try:
            if raw:
                if ctype != "application/json":
                    raise BadRequest(400, "Content-Type must be application/json")
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise BadRequest(400, "the body is not JSON")
            self.server.node.record(method, self.path, ctype, body)
            with self.server.node.lock:
                status, obj = self.server.node.route(method, self.path, body)
        except BadRequest as e:
            status, obj = e.status, {"error": str(e)}
        self._answer(status, obj)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


class Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def main():
    global SERVER
    ap = argparse.ArgumentParser(description="fake shoald control API")
    ap.add_argument("socket")
    ap.add_argument("log")
    ap.add_argument("--status-pad", type=int, default=0)
    a = ap.parse_args()
    if os.path.exists(a.socket):
        os.unlink(a.socket)
    old = os.umask(0o177)    # the socket is the node user's only, as shoald's is
    SERVER = Server(a.socket, Handler)
    os.umask(old)
    SERVER.node = Node(a.log, a.status_pad)
    print("fake node listening on %s" % a.socket, file=sys.stderr, flush=True)
    SERVER.serve_forever()


if __name__ == "__main__":
    main()
