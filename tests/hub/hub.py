#!/usr/bin/env python3
"""hub.py - a stand-alone test double of the Hugging Face Hub for downloaders.

Standard library only. Serves repos from a directory the way the Hub's HTTP API does for
downloading clients, as described in docs hub-protocol.md section 1 (the spec): repo info,
refs, tree listing (paginated), paths-info, resolve/raw (GET/HEAD, Range), LFS files
redirected to a second "CDN" listening socket, gated/private repos, the X-Error-Code
vocabulary, rate-limit headers and injectable faults. Xet is NOT exposed (spec 1.11 item 4,
option a): no X-Xet-Hash, no xet Link rels, no tree xetHash, no xet-read-token route.

Usage:
    python3 -B hub.py --root DIR [--port 0] [--cdn-port 0] [--ready-file PATH]
                      [--faults JSON|@FILE] [--rate-limit api=N,resolvers=N,pages=N]
                      [--resolve-cache-redirect] [--max-lifetime SECONDS] [--verbose]

Both servers bind 127.0.0.1 only; port 0 lets the OS pick. When both sockets listen, the
ready file (if given) is written atomically with {"pid", "port", "cdn_port", "url",
"cdn_url"} and then one line is printed to stdout:
    SHOAL_HUB_READY port=<port> cdn_port=<cdn_port>

Repo layout under --root (repo.json is re-read whenever it changes; a commit directory must
not change once its id is in repo.json):

    DIR/tokens.json                      optional: ["tok", ...] known user tokens (valid
                                         credentials that were granted nothing)
    DIR/<type>s/<org>/<name>/            <type> = model | dataset | space
        repo.json
        commits/<40-hex commit>/<path>   the files of the repo at that commit

    repo.json:
    {
      "default_branch": "main",                      (optional, default "main")
      "branches": {"main": "<commit>"},
      "tags": {"v1": "<commit>"},
      "pull_requests": {"1": "<commit>"},            (revision "refs/pr/1")
      "commits": {
        "<commit>": {"title": "msg", "date": "2024-01-01T00:00:00.000Z",
                     "parents": ["<commit>"],
                     "lfs": {"model.safetensors": {"sha256": "<64-hex>", "size": 123}}}
      },
      "private": false,
      "gated": false,                                false | "auto" | "manual"
      "disabled": false,
      "tokens": ["tok"],                             tokens granted access (private/gated)
      "created_at": "2024-01-01T00:00:00.000Z"
    }

A file is an LFS file iff its path is listed in its commit's "lfs" map (a missing sha256
is computed on first use). Its git blob is the LFS pointer; other files are regular git
blobs whose oid/ETag is sha1("blob <size>\\0" + content). make_model.py writes this layout.

Tokens: "Authorization: Bearer <tok>". A token is *known* if it is in DIR/tokens.json or in
any repo's "tokens". An unknown token gets 401 "Invalid credentials in Authorization header"
on every hub route (as the real Hub does for expired tokens). Private repo without a granted
token: 401 RepoNotFound anonymously, 404 RepoNotFound with a known token (same as a missing
repo). Gated repo files: 401 GatedRepo anonymously, 403 GatedRepo with a known token that is
not granted; gated metadata (info, tree, paths-info, refs) stays readable (spec 1.2).
Disabled repo: 403 with X-Error-Message "Access to this resource is disabled.".

Routes (hub port):
    GET  /api/{models|datasets|spaces}/<org>/<name>[/revision/<rev>]  (?blobs=true, ?expand=)
    GET  /api/{...}/<org>/<name>/refs
    GET  /api/{...}/<org>/<name>/tree/<rev>[/<path>]  (?recursive=, ?expand=, ?limit=, ?cursor=)
    POST /api/{...}/<org>/<name>/paths-info/<rev>     (form paths=..&paths=.. or JSON)
    GET|HEAD /[datasets/|spaces/]<org>/<name>/{resolve|raw}/<rev>/<path>
    GET|HEAD /api/resolve-cache/{models|datasets|spaces}/<org>/<name>/<commit>/<path>
Revisions: branch, tag, refs/heads/X, refs/tags/X, refs/pr/N, 40-hex commit, HEAD; a "/" in a
revision may be sent as %2F (clients do) or raw for refs/pr/N, refs/heads/X, refs/tags/X.
CDN port: GET|HEAD /lfs/<sha256>?repo=..&commit=..&path=..&Expires=..&Signature=..; the
signature is checked, Authorization is never required (only recorded in the stats).

Test endpoints (either port, never counted nor faulted):
    GET  /_test/stats     counters: per server, per path, status codes, request log,
                          Authorization headers the CDN received
    POST /_test/reset     zero the counters (faults and config are kept)
    GET|POST /_test/faults    read / replace the fault list (body: [..] or
                          {"faults": [..], "append": true})
    GET|POST /_test/config    read / update {"resolve_cache_redirect", "tree_page_limit",
                          "cdn_url_ttl", "rate_limits", "ignore_range"}

Faults (JSON list; each applies to the next "count" matching requests, default 1):
    {"type": "429", "retry_after": 1}           429 + Retry-After + RateLimit r=0
    {"type": "503"[, "retry_after": S]}         also "500", "502", "504" or
    {"type": "status", "code": N}               any status code
    {"type": "stall", "after_bytes": K, "seconds": S}   K body bytes, S s silence, close
    {"type": "truncate", "after_bytes": K}      close after K body bytes
    {"type": "corrupt", "offset": K}            flip (xor 0xff) body byte K
    {"type": "slow", "rate": R[, "max_seconds": M]}     R bytes/s for at most M s
  common keys: "path" (fnmatch glob on the URL path, default "*"), "count",
  "server" ("hub" | "cdn" | "any"), "method" (status faults only; default any).
  Status faults match any request; body faults (stall, truncate, corrupt, slow) match only
  file-content answers with a body (resolve/raw/resolve-cache 200/206 and CDN 200/206).
  after_bytes defaults to half the body. Sleeps are bounded (stall <= 60 s, slow <= 120 s).
"""
import argparse
import base64
import fnmatch
import hashlib
import hmac
import http.server
import json
import os
import re
import socket
import sys
import threading
import time
import traceback
import urllib.parse

HOST = "127.0.0.1"
HEX40 = re.compile(r"[0-9a-f]{40}\Z")
HEX64 = re.compile(r"[0-9a-f]{64}\Z")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}\Z")
PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
WEB_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
BLOCK = 1 << 16
MAX_REQUEST_BODY = 16 << 20
MAX_STALL_SECONDS = 60.0
MAX_SLOW_SECONDS = 120.0
LOG_KEEP = 2000
AUTHOR = "Shoal Test <shoal-test@example.invalid>"
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
DISABLED_MESSAGE = "Access to this resource is disabled."
# Spec 1.7: the headers the Hub exposes to browser clients.
EXPOSE = ("X-Repo-Commit, X-Request-Id, X-Error-Code, X-Error-Message, X-Total-Count, ETag, "
          "Link, Accept-Ranges, Content-Range, X-Linked-Size, X-Linked-ETag, X-Xet-Hash")
# Spec 1.10 fixed windows of 5 minutes; the quotas are large by default (never hit by tests
# unless --rate-limit lowers them).
RATE_WINDOW = 300
DEFAULT_RATE_LIMITS = {"api": 100000, "resolvers": 1000000, "pages": 100000}
STATUS_FAULTS = {"429", "500", "502", "503", "504", "status"}
BODY_FAULTS = {"stall", "truncate", "corrupt", "slow"}


# --------------------------------------------------------------------------- git hashes

def git_blob_sha1_bytes(data):
    h = hashlib.sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.hexdigest()


def hash_file(path, sha1=True, sha256=False):
    """Returns (git blob sha1 or None, sha256 or None) of a file, streaming."""
    size = os.path.getsize(path)
    h1 = hashlib.sha1(b"blob %d\0" % size) if sha1 else None
    h2 = hashlib.sha256() if sha256 else None
    with open(path, "rb") as f:
        for _ in range(size // BLOCK + 2):
            b = f.read(1 << 20)
            if not b:
                break
            if h1:
                h1.update(b)
            if h2:
                h2.update(b)
    return (h1.hexdigest() if h1 else None, h2.hexdigest() if h2 else None)


def lfs_pointer(sha256, size):
    return ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
            % (sha256, size)).encode()


def git_tree_sha1(entries):
    """entries: iterable of (name, is_dir, oid_hex). Git orders names as if a directory
    name ended in '/'."""
    data = b""
    for name, is_dir, oid in sorted(entries, key=lambda e: e[0].encode() + (b"/" if e[1] else b"")):
        data += (b"40000 " if is_dir else b"100644 ") + name.encode() + b"\0" + bytes.fromhex(oid)
    return hashlib.sha1(b"tree %d\0" % len(data) + data).hexdigest()


def git_commit_sha1(tree, parents, timestamp, message, author=AUTHOR):
    lines = ["tree " + tree] + ["parent " + p for p in parents]
    lines += ["author %s %d +0000" % (author, timestamp),
              "committer %s %d +0000" % (author, timestamp), "", message]
    body = ("\n".join(lines) + "\n").encode()
    return hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()


def iso_date(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def git_sort_key(name, is_dir):
    return name.encode() + (b"/" if is_dir else b"")


# --------------------------------------------------------------------------- repos on disk

class CommitIndex:
    """The files of one commit directory; hashes are computed lazily and cached (a commit
    directory is immutable)."""

    def __init__(self, base, lfs_map):
        self.base = base
        self.lfs = lfs_map if isinstance(lfs_map, dict) else {}
        self.files = {}
        self.children = {"": {}}
        self.lock = threading.Lock()
        self.oids = {}
        self.sha256 = {}
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            rel = os.path.relpath(dirpath, base).replace(os.sep, "/")
            rel = "" if rel == "." else rel
            for fn in filenames:
                p = fn if not rel else rel + "/" + fn
                ap = os.path.join(dirpath, fn)
                self.files[p] = (ap, os.path.getsize(ap))
        for p in self.files:
            parts = p.split("/")
            for i in range(len(parts)):
                parent = "/".join(parts[:i])
                self.children.setdefault(parent, {})[parts[i]] = i < len(parts) - 1
                if i < len(parts) - 1:
                    self.children.setdefault("/".join(parts[:i + 1]), {})

    def is_file(self, path):
        return path in self.files

    def is_dir(self, path):
        return path in self.children

    def is_lfs(self, path):
        return path in self.lfs

    def lfs_sha256(self, path):
        rec = self.lfs.get(path) or {}
        s = rec.get("sha256") or rec.get("oid")
        if isinstance(s, str) and HEX64.match(s):
            return s
        with self.lock:
            if path not in self.sha256:
                self.sha256[path] = hash_file(self.files[path][0], sha1=False, sha256=True)[1]
            return self.sha256[path]

    def blob_oid(self, path):
        with self.lock:
            oid = self.oids.get(path)
        if oid:
            return oid
        if self.is_lfs(path):
            oid = git_blob_sha1_bytes(lfs_pointer(self.lfs_sha256(path), self.files[path][1]))
        else:
            oid = hash_file(self.files[path][0])[0]
        with self.lock:
            self.oids[path] = oid
        return oid

    def tree_oid(self, path):
        key = "tree:" + path
        with self.lock:
            oid = self.oids.get(key)
        if oid:
            return oid
        entries = []
        for name, is_dir in self.children.get(path, {}).items():
            sub = name if not path else path + "/" + name
            entries.append((name, is_dir, self.tree_oid(sub) if is_dir else self.blob_oid(sub)))
        oid = git_tree_sha1(entries)
        with self.lock:
            self.oids[key] = oid
        return oid

    def oid(self, path):
        if path in self.files:
            return self.blob_oid(path)
        if path in self.children:
            return self.tree_oid(path)
        return None

    def listing(self, path, recursive):
        """Paths under directory `path` in git order; recursive lists each directory right
        before its contents (the Hub's order is not specified; a guess)."""
        out = []

        def walk(d):
            kids = sorted(self.children.get(d, {}).items(), key=lambda kv: git_sort_key(*kv))
            for name, is_dir in kids:
                sub = name if not d else d + "/" + name
                out.append(sub)
                if recursive and is_dir:
                    walk(sub)  # depth bounded by the directory depth on disk
        walk(path)
        return out

    def entry(self, path, repo=None, commit=None, expand=False):
        if path in self.files:
            size = self.files[path][1]
            e = {"type": "file", "oid": self.blob_oid(path), "size": size, "path": path}
            if self.is_lfs(path):
                sha = self.lfs_sha256(path)
                e["lfs"] = {"oid": sha, "size": size, "pointerSize": len(lfs_pointer(sha, size))}
        elif path in self.children and path:
            e = {"type": "directory", "oid": self.tree_oid(path), "size": 0, "path": path}
        else:
            return None
        if expand and repo is not None:
            c = repo.last_commit(commit, path)
            meta = repo.commit_meta(c)
            e["lastCommit"] = {"id": c, "title": meta.get("title", ""), "date": meta.get("date", "")}
            # securityFileStatus is not modelled.
        return e


class Repo:
    def __init__(self, store, rtype, org, name, path, meta):
        self.store = store
        self.type = rtype
        self.org = org
        self.name = name
        self.id = org + "/" + name
        self.path = path
        self.meta = meta
        self.private = bool(meta.get("private", False))
        g = meta.get("gated", False)
        self.gated = g if g in ("auto", "manual") else (g is True and "auto") or False
        self.disabled = bool(meta.get("disabled", False))
        self.tokens = set(t for t in meta.get("tokens", []) if isinstance(t, str))
        self.default_branch = meta.get("default_branch") or "main"

    def commits(self):
        c = self.meta.get("commits")
        return c if isinstance(c, dict) else {}

    def commit_meta(self, commit):
        m = self.commits().get(commit)
        return m if isinstance(m, dict) else {}

    def has_commit(self, commit):
        return commit in self.commits() and os.path.isdir(os.path.join(self.path, "commits", commit))

    def refs(self, key):
        r = self.meta.get(key)
        return r if isinstance(r, dict) else {}

    def resolve(self, rev):
        """Revision -> commit id or None. A bare name is looked up like `git rev-parse`
        does (tag before branch); the Hub's order for ambiguous names is not specified."""
        if not isinstance(rev, str) or not rev:
            return None
        if rev == "HEAD":
            rev = self.default_branch
        tags, branches, prs = self.refs("tags"), self.refs("branches"), self.refs("pull_requests")
        c = None
        if rev.startswith("refs/heads/"):
            c = branches.get(rev[len("refs/heads/"):])
        elif rev.startswith("refs/tags/"):
            c = tags.get(rev[len("refs/tags/"):])
        elif rev.startswith("refs/pr/"):
            c = prs.get(rev[len("refs/pr/"):])
        elif rev in tags:
            c = tags[rev]
        elif rev in branches:
            c = branches[rev]
        elif HEX40.match(rev):
            c = rev
        if isinstance(c, str) and self.has_commit(c):
            return c
        return None

    def index(self, commit):
        return self.store.index(self, commit)

    def last_commit(self, commit, path):
        """Newest commit on the first-parent chain from `commit` that changed `path`."""
        cur = commit
        cur_oid = self.index(cur).oid(path)
        for _ in range(len(self.commits()) + 1):
            parents = self.commit_meta(cur).get("parents") or []
            parent = parents[0] if parents and self.has_commit(parents[0]) else None
            if parent is None:
                return cur
            if self.index(parent).oid(path) != cur_oid:
                return cur
            cur = parent
        return cur


class RepoStore:
    def __init__(self, root):
        self.root = root
        self.lock = threading.Lock()
        self.meta_cache = {}
        self.index_cache = {}
        self.tokens_cache = None

    def repo_dir(self, rtype, org, name):
        return os.path.join(self.root, rtype + "s", org, name)

    def _load_json(self, path):
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self.lock:
            hit = self.meta_cache.get(path)
            if hit and hit[0] == key:
                return hit[1]
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read().decode("utf-8"))
        except (OSError, ValueError):
            return None
        with self.lock:
            self.meta_cache[path] = (key, data)
        return data

    def get(self, rtype, org, name):
        if rtype not in WEB_PREFIX or not NAME_RE.match(org or "") or not NAME_RE.match(name or ""):
            return None
        d = self.repo_dir(rtype, org, name)
        meta = self._load_json(os.path.join(d, "repo.json"))
        if not isinstance(meta, dict):
            return None
        return Repo(self, rtype, org, name, d, meta)

    def index(self, repo, commit):
        key = (repo.path, commit)
        with self.lock:
            idx = self.index_cache.get(key)
        if idx is None:
            lfs = repo.commit_meta(commit).get("lfs") or {}
            idx = CommitIndex(os.path.join(repo.path, "commits", commit), lfs)
            with self.lock:
                idx = self.index_cache.setdefault(key, idx)
        return idx

    def known_tokens(self):
        toks = set()
        t = self._load_json(os.path.join(self.root, "tokens.json"))
        if isinstance(t, list):
            toks.update(x for x in t if isinstance(x, str))
        for plural in PLURAL:
            tdir = os.path.join(self.root, plural)
            for org in _listdir(tdir):
                for name in _listdir(os.path.join(tdir, org)):
                    meta = self._load_json(os.path.join(tdir, org, name, "repo.json"))
                    if isinstance(meta, dict):
                        toks.update(x for x in meta.get("tokens", []) if isinstance(x, str))
        return toks


def _listdir(d):
    try:
        return sorted(os.listdir(d))
    except OSError:
        return []


# --------------------------------------------------------------------------- faults / state

class FaultError(ValueError):
    pass


def parse_faults(spec):
    if isinstance(spec, dict):
        spec = [spec]
    if not isinstance(spec, list):
        raise FaultError("faults must be a JSON list of objects")
    out = []
    for f in spec:
        if not isinstance(f, dict):
            raise FaultError("each fault must be an object")
        t = str(f.get("type", ""))
        if t not in STATUS_FAULTS and t not in BODY_FAULTS:
            raise FaultError("unknown fault type %r" % t)
        g = dict(f)
        g["type"] = t
        g["path"] = str(f.get("path", "*"))
        g["server"] = str(f.get("server", "any"))
        if g["server"] not in ("hub", "cdn", "any"):
            raise FaultError("server must be hub, cdn or any")
        try:
            g["count"] = int(f.get("count", 1))
            if g["count"] < 1:
                raise FaultError("count must be >= 1")
            if t == "status":
                g["code"] = int(f["code"])
                if not 100 <= g["code"] <= 599:
                    raise FaultError("bad status code")
            elif t in STATUS_FAULTS:
                g["code"] = int(t)
            if t == "429":
                g["retry_after"] = int(f.get("retry_after", 1))
            elif "retry_after" in f and f["retry_after"] is not None:
                g["retry_after"] = int(f["retry_after"])
            if t in ("stall", "truncate") and f.get("after_bytes") is not None:
                g["after_bytes"] = max(0, int(f["after_bytes"]))
            if t == "stall":
                g["seconds"] = min(MAX_STALL_SECONDS, max(0.0, float(f.get("seconds", 2.0))))
            if t == "corrupt":
                g["offset"] = max(0, int(f.get("offset", 0)))
            if t == "slow":
                g["rate"] = max(1, int(f.get("rate", 65536)))
                g["max_seconds"] = min(MAX_SLOW_SECONDS, max(0.0, float(f.get("max_seconds", 30.0))))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, FaultError):
                raise
            raise FaultError("bad fault %r: %s" % (f, e))
        out.append(g)
    return out


class State:
    def __init__(self, store, verbose=False, rate_limits=None, resolve_cache_redirect=False):
        self.store = store
        self.verbose = verbose
        self.secret = os.urandom(32)
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.faults = []
        self.ports = {"hub": 0, "cdn": 0}
        self.request_seq = 0
        self.config = {
            "resolve_cache_redirect": bool(resolve_cache_redirect),
            # Page size of the tree listing; the Hub's default is not in the spec (guess).
            "tree_page_limit": 1000,
            "cdn_url_ttl": 3600,
            # Answer every Range with 200 and the whole body, as a gzipping CDN may (spec 1.6).
            "ignore_range": False,
            "rate_limits": dict(rate_limits or DEFAULT_RATE_LIMITS),
        }
        self.reset()

    def reset(self):
        with self.lock:
            self.servers = {r: {"requests": 0, "bytes": 0, "status": {}} for r in ("hub", "cdn")}
            self.paths = {"hub": {}, "cdn": {}}
            self.cdn_auth = []
            self.cdn_requests_with_auth = 0
            self.log = []
            self.rate = {}

    def set_faults(self, faults, append=False):
        with self.lock:
            self.faults = (self.faults if append else []) + faults

    def take_fault(self, kinds, role, method, raw_path):
        dec = urllib.parse.unquote(raw_path)
        with self.lock:
            for i, f in enumerate(self.faults):
                if f["type"] not in kinds or f["server"] not in ("any", role):
                    continue
                if f.get("method") and str(f["method"]).upper() != method:
                    continue
                if not (fnmatch.fnmatchcase(raw_path, f["path"]) or fnmatch.fnmatchcase(dec, f["path"])):
                    continue
                f["count"] -= 1
                if f["count"] <= 0:
                    del self.faults[i]
                return dict(f)
        return None

    def begin(self, role, method, path, headers):
        with self.lock:
            self.request_seq += 1
            seq = self.request_seq
            self.servers[role]["requests"] += 1
            p = self.paths[role].setdefault(path, {"requests": 0, "bytes": 0, "methods": {}})
            p["requests"] += 1
            p["methods"][method] = p["methods"].get(method, 0) + 1
            auth = headers.get("Authorization")
            if role == "cdn" and auth is not None:
                self.cdn_requests_with_auth += 1
                if len(self.cdn_auth) < LOG_KEEP:
                    self.cdn_auth.append(auth)
        return seq

    def add_bytes(self, role, path, n, entry):
        """Counted before the bytes are written, so a client that has read a response
        always sees it in the stats."""
        with self.lock:
            self.servers[role]["bytes"] += n
            p = self.paths[role].get(path)
            if p is not None:
                p["bytes"] += n
            entry["bytes"] += n

    def responded(self, role, entry):
        """Called when the status line is about to be sent."""
        with self.lock:
            s = str(entry.get("status"))
            st = self.servers[role]["status"]
            st[s] = st.get(s, 0) + 1
            if len(self.log) >= LOG_KEEP:
                del self.log[: LOG_KEEP // 2]
            self.log.append(entry)

    def rate_take(self, bucket):
        now = time.time()
        with self.lock:
            quota = int(self.config["rate_limits"].get(bucket, DEFAULT_RATE_LIMITS[bucket]))
            start, used = self.rate.get(bucket, (now - now % RATE_WINDOW, 0))
            if now - start >= RATE_WINDOW:
                start, used = now - now % RATE_WINDOW, 0
            used += 1
            self.rate[bucket] = (start, used)
            reset = max(1, int(start + RATE_WINDOW - now + 0.999))
            return quota, max(0, quota - used), reset, used > quota

    def stats(self):
        with self.lock:
            return {
                "servers": json.loads(json.dumps(self.servers)),
                "paths": json.loads(json.dumps(self.paths)),
                "cdn_authorization": list(self.cdn_auth),
                "cdn_requests_with_authorization": self.cdn_requests_with_auth,
                "log": [dict(e) for e in self.log],
                "faults_pending": [dict(f) for f in self.faults],
                "ports": dict(self.ports),
            }


# --------------------------------------------------------------------------- HTTP

class ClientGone(Exception):
    pass


class HttpError(Exception):
    def __init__(self, status, message):
        Exception.__init__(self, message)
        self.status = status
        self.message = message


def parse_range(value, size):
    """-> None (serve everything), (start, end) inclusive, or "unsatisfiable". Multiple
    ranges and malformed values are ignored (RFC 9110 allows it; S3 does the same)."""
    if not value:
        return None
    value = value.strip()
    if not value.lower().startswith("bytes="):
        return None
    spec = value[6:].strip()
    if "," in spec:
        return None
    m = re.fullmatch(r"(\d*)\s*-\s*(\d*)", spec)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):
        n = int(m.group(2))
        if n == 0 or size == 0:
            return "unsatisfiable"
        return (max(0, size - n), size - 1)
    a = int(m.group(1))
    if m.group(2):
        b = int(m.group(2))
        if b < a:
            return None
    else:
        b = size - 1
    if a >= size:
        return "unsatisfiable"
    return (a, min(b, size - 1))


def qbool(v):
    return str(v).lower() in ("1", "true", "yes")


def header_safe(v):
    return str(v).encode("latin-1", "replace").decode("latin-1").replace("\r", " ").replace("\n", " ")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ShoalTestHub/1.0"
    timeout = 120  # idle keep-alive connections are dropped after this many seconds

    # ---- plumbing

    @property
    def state(self):
        return self.server.state

    @property
    def role(self):
        return self.server.role

    def log_message(self, fmt, *args):
        if self.state.verbose:
            sys.stderr.write("%s %s\n" % (self.role, fmt % args))

    def log_request(self, code="-", size="-"):
        pass

    def version_string(self):
        return self.server_version

    def send_response(self, code, message=None):
        self._status = code
        super().send_response(code, message)

    def do_GET(self):
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    def _read_request_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            data = b""
            for _ in range(MAX_REQUEST_BODY):
                line = self.rfile.readline(1024)
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    for _ in range(100):  # trailers
                        if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                            break
                    return data
                if len(data) + n > MAX_REQUEST_BODY:
                    raise HttpError(413, "Request body too large")
                data += self.rfile.read(n)
                self.rfile.readline(8)
            return data
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_REQUEST_BODY:
            raise HttpError(413, "Request body too large")
        return self.rfile.read(n) if n > 0 else b""

    def _dispatch(self):
        t0 = time.monotonic()
        self._status = None
        self._headers_done = False
        self._sent = 0
        split = urllib.parse.urlsplit(self.path)
        self._rawpath = split.path or "/"
        self._query = split.query
        self._extra = []
        self._entry = None
        try:
            try:
                self._body = self._read_request_body()
            except (ValueError, HttpError):
                self.close_connection = True
                self._body = b""
                self._error(413, "Request body too large or malformed")
                return
            if self._rawpath.startswith("/_test/"):
                self._handle_test()
                return
            self.state.begin(self.role, self.command, self._rawpath, self.headers)
            self._entry = {"server": self.role, "method": self.command, "path": self._rawpath,
                           "query": self._query, "status": None, "bytes": 0,
                           "range": self.headers.get("Range"),
                           "authorization": self.headers.get("Authorization") is not None}
            try:
                self._handle_counted()
            except ClientGone:
                self.close_connection = True
            except Exception:
                traceback.print_exc(file=sys.stderr)
                if not self._headers_done:
                    self._error(500, "Internal test-hub error")
                else:
                    self.close_connection = True
        except ClientGone:
            self.close_connection = True
        finally:
            if self.state.verbose:
                sys.stderr.write("%s %s %s %s %dB %.3fs\n" % (
                    self.role, self.command, self.path, self._status, self._sent,
                    time.monotonic() - t0))

    def _handle_counted(self):
        exceeded = False
        if self.role == "hub":
            p = self._rawpath
            if p.startswith("/api/resolve-cache/") or "/resolve/" in p:
                bucket = "resolvers"
            elif p.startswith("/api/"):
                bucket = "api"
            else:
                bucket = "pages"
            quota, remaining, reset, exceeded = self.state.rate_take(bucket)
            self._extra = [
                ("RateLimit", '"%s";r=%d;t=%d' % (bucket, remaining, reset)),
                ("RateLimit-Policy", '"fixed window";"%s";q=%d;w=%d' % (bucket, quota, RATE_WINDOW)),
            ]
        f = self.state.take_fault(STATUS_FAULTS, self.role, self.command, self._rawpath)
        if f:
            return self._status_fault(f)
        if self.role == "hub" and exceeded:
            return self._error(429, "Rate limit exceeded for %s requests (test hub quota)" % bucket,
                               headers=[("Retry-After", str(reset))])
        if self.role == "cdn":
            return self._handle_cdn()
        return self._handle_hub()

    def _status_fault(self, f):
        code = f["code"]
        hdrs = []
        if f.get("retry_after") is not None:
            hdrs.append(("Retry-After", str(f["retry_after"])))
            if code == 429:
                self._extra = [h for h in self._extra if h[0] != "RateLimit"]
                bucket = "resolvers" if "/resolve" in self._rawpath else "api"
                hdrs.append(("RateLimit", '"%s";r=0;t=%d' % (bucket, f["retry_after"])))
        msg = f.get("message") or {429: "Too Many Requests", 500: "Internal Error",
                                   502: "Bad Gateway", 503: "Service Unavailable",
                                   504: "Gateway Timeout"}.get(code, "Injected fault")
        self._error(code, msg, headers=hdrs)

    def _start(self, status, headers):
        if self._entry is not None:
            self._entry["status"] = status
            self.state.responded(self.role, self._entry)
        self.send_response(status)
        if self.role == "hub":
            with self.state.lock:
                self.state.request_seq += 1
                seq = self.state.request_seq
            self.send_header("X-Request-Id", "Root=1-%08x-%024x" % (int(time.time()), seq))
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Expose-Headers", EXPOSE)
            for k, v in self._extra:
                self.send_header(k, header_safe(v))
        for k, v in headers:
            self.send_header(k, header_safe(v))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._headers_done = True

    def _write(self, data):
        if not data:
            return
        if self._entry is not None:
            self.state.add_bytes(self.role, self._rawpath, len(data), self._entry)
        try:
            self.wfile.write(data)
        except (ConnectionError, TimeoutError, OSError) as e:
            if self._entry is not None:
                self.state.add_bytes(self.role, self._rawpath, -len(data), self._entry)
            raise ClientGone() from e
        self._sent += len(data)

    def _reply(self, status, body=b"", headers=(), ctype="application/json; charset=utf-8"):
        hdrs = [("Content-Type", ctype), ("Content-Length", str(len(body)))] + list(headers)
        self._start(status, hdrs)
        if self.command != "HEAD":
            self._write(body)

    def _json(self, status, obj, headers=()):
        self._reply(status, json.dumps(obj, separators=(",", ":")).encode(), headers)

    def _error(self, status, message, code=None, headers=()):
        hdrs = list(headers)
        if code:
            hdrs.append(("X-Error-Code", code))
        hdrs.append(("X-Error-Message", message))
        self._json(status, {"error": message}, hdrs)

    def _method(self, *allowed):
        if self.command in allowed:
            return True
        self._reply(405, b'{"error":"Method not allowed"}', [("Allow", ", ".join(allowed))])
        return False

    def _host_url(self, role="hub"):
        if role == "cdn":
            return "http://%s:%d" % (HOST, self.state.ports["cdn"])
        host = self.headers.get("Host") or ""
        if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]{1,255}", host):
            host = "%s:%d" % (HOST, self.state.ports["hub"])
        return "http://" + host

    # ---- file bodies with faults

    def _serve_content(self, size, opener, headers, ctype="application/octet-stream"):
        """Serves a file (opener() -> binary file object positioned at 0) honouring Range;
        body faults apply here."""
        r = parse_range(self.headers.get("Range"), size)
        if self.state.config["ignore_range"]:
            r = None
        if r == "unsatisfiable":
            return self._reply(416, b"Requested Range Not Satisfiable",
                               list(headers) + [("Content-Range", "bytes */%d" % size),
                                                ("Accept-Ranges", "bytes")], "text/plain")
        if r is None:
            status, start, length = 200, 0, size
            hdrs = []
        else:
            status, start, length = 206, r[0], r[1] - r[0] + 1
            hdrs = [("Content-Range", "bytes %d-%d/%d" % (r[0], r[1], size))]
        hdrs = [("Content-Type", ctype), ("Content-Length", str(length)),
                ("Accept-Ranges", "bytes")] + hdrs + list(headers)
        self._start(status, hdrs)
        if self.command == "HEAD":
            return
        fault = self.state.take_fault(BODY_FAULTS, self.role, self.command, self._rawpath)
        with opener() as f:
            f.seek(start)

            def blocks():
                remaining = length
                for _ in range(length // BLOCK + 2):
                    if remaining <= 0:
                        return
                    b = f.read(min(BLOCK, remaining))
                    if not b:
                        raise IOError("file shorter than expected")
                    remaining -= len(b)
                    yield b
            self._write_body(blocks(), length, fault)

    def _write_body(self, blocks, length, fault):
        kind = fault["type"] if fault else None
        sent = 0
        t0 = time.monotonic()
        limit = None
        if kind in ("stall", "truncate"):
            limit = fault.get("after_bytes")
            limit = length // 2 if limit is None else min(limit, length)
        for block in blocks:
            if kind == "corrupt":
                off = fault["offset"]
                if sent <= off < sent + len(block):
                    ba = bytearray(block)
                    ba[off - sent] ^= 0xFF
                    block = bytes(ba)
            if limit is not None and sent + len(block) >= limit and limit < length:
                self._write(block[: limit - sent])
                if kind == "stall":
                    self.state.stop_event.wait(fault["seconds"])
                self.close_connection = True
                return
            if kind == "slow":
                rate, deadline = fault["rate"], t0 + fault["max_seconds"]
                piece = max(1, rate // 20)
                for i in range(0, len(block), piece):
                    now = time.monotonic()
                    due = t0 + (sent + i) / rate
                    wait = min(due, deadline) - now
                    if wait > 0:
                        self.state.stop_event.wait(wait)
                    self._write(block[i:i + piece])
            else:
                self._write(block)
            sent += len(block)

    # ---- access control

    def _token(self):
        h = self.headers.get("Authorization")
        if h is None:
            return None, False
        parts = h.split(None, 1)
        if len(parts) == 2 and parts[0].lower() == "bearer" and parts[1].strip():
            return parts[1].strip(), True
        return "", True

    def _access(self, rtype, org, name, files):
        """-> Repo, or None after an error answer was sent."""
        tok, present = self._token()
        store = self.state.store
        if present and (not tok or tok not in store.known_tokens()):
            self._error(401, INVALID_CREDENTIALS)
            return None
        repo = store.get(rtype, org, name)
        if repo is None or (repo.private and tok not in repo.tokens):
            # The Hub does not tell a private repo from a missing one: 401 anonymously,
            # 404 when authenticated.
            self._error(404 if tok else 401, "Repository not found", "RepoNotFound")
            return None
        if repo.disabled:
            self._error(403, DISABLED_MESSAGE)
            return None
        if files and repo.gated and tok not in repo.tokens:
            what = {"model": "model", "dataset": "dataset", "space": "space"}[rtype]
            if tok:
                self._error(403, "Access to %s %s is restricted and you are not in the authorized "
                                 "list. Visit %s/%s%s to ask for access." % (
                                     what, repo.id, self._host_url(), WEB_PREFIX[rtype], repo.id),
                            "GatedRepo")
            else:
                self._error(401, "Access to %s %s is restricted. You must have access to it and be "
                                 "authenticated to access it. Please log in." % (what, repo.id),
                            "GatedRepo")
            return None
        return repo

    def _revision(self, repo, rev):
        c = repo.resolve(rev)
        if c is None:
            self._error(404, "Invalid rev id: %s" % rev, "RevisionNotFound")
        return c

    # ---- hub routes

    @staticmethod
    def _take_rev(dec, i):
        """Revision at segment i: one (percent-decoded) segment, or the unencoded forms
        refs/pr/N, refs/heads/X, refs/tags/X of hand-written URLs."""
        if dec[i] == "refs" and i + 2 < len(dec) and dec[i + 1] in ("pr", "heads", "tags"):
            return "refs/%s/%s" % (dec[i + 1], dec[i + 2]), i + 3
        return dec[i], i + 1

    def _handle_hub(self):
        segs = self._rawpath.split("/")[1:]
        while segs and segs[-1] == "":
            segs.pop()
        dec = [urllib.parse.unquote(s) for s in segs]
        if not dec:
            if self._method("GET", "HEAD"):
                self._reply(200, b"Shoal test hub\n", ctype="text/plain; charset=utf-8")
            return
        if dec[0] == "api":
            return self._handle_api(dec)
        k = 1 if dec[0] in ("datasets", "spaces") else 0
        rtype = PLURAL[dec[0]] if k else "model"
        if len(dec) >= k + 5 and dec[k + 2] in ("resolve", "raw"):
            if not self._method("GET", "HEAD"):
                return
            rev, j = self._take_rev(dec, k + 3)
            if j >= len(dec):
                return self._error(404, "Entry not found", "EntryNotFound")
            return self._resolve(rtype, dec[k], dec[k + 1], rev, "/".join(dec[j:]), dec[k + 2])
        self._error(404, "Not Found")

    def _handle_api(self, dec):
        if len(dec) >= 7 and dec[1] == "resolve-cache" and dec[2] in PLURAL:
            if self._method("GET", "HEAD"):
                self._resolve(PLURAL[dec[2]], dec[3], dec[4], dec[5], "/".join(dec[6:]), "cache")
            return
        if len(dec) < 4 or dec[1] not in PLURAL:
            return self._error(404, "Not Found")
        rtype, org, name = PLURAL[dec[1]], dec[2], dec[3]
        if len(dec) == 4:
            if self._method("GET", "HEAD"):
                self._info(rtype, org, name, None)
            return
        op = dec[4]
        if op == "refs" and len(dec) == 5:
            if self._method("GET", "HEAD"):
                self._refs(rtype, org, name)
            return
        if op in ("revision", "tree", "paths-info") and len(dec) >= 6:
            rev, j = self._take_rev(dec, 5)
            if op == "revision" and j == len(dec):
                if self._method("GET", "HEAD"):
                    self._info(rtype, org, name, rev)
                return
            if op == "tree":
                if self._method("GET", "HEAD"):
                    self._tree(rtype, org, name, rev, "/".join(dec[j:]))
                return
            if op == "paths-info" and j == len(dec):
                if self._method("POST"):
                    self._paths_info(rtype, org, name, rev)
                return
        self._error(404, "Not Found")

    def _info(self, rtype, org, name, rev):
        repo = self._access(rtype, org, name, files=False)
        if repo is None:
            return
        q = urllib.parse.parse_qs(self._query, keep_blank_values=True)
        if rev is None:
            commit = repo.resolve(repo.default_branch)  # None for an empty repo
        else:
            commit = self._revision(repo, rev)
            if commit is None:
                return
        cmeta = repo.commit_meta(commit) if commit else {}
        blobs = qbool((q.get("blobs") or ["false"])[-1])
        siblings = []
        if commit:
            idx = repo.index(commit)
            for p in sorted(idx.files):
                s = {"rfilename": p}
                if blobs:
                    s["size"] = idx.files[p][1]
                    s["blobId"] = idx.blob_oid(p)
                    if idx.is_lfs(p):
                        sha = idx.lfs_sha256(p)
                        s["lfs"] = {"size": idx.files[p][1], "sha256": sha,
                                    "pointerSize": len(lfs_pointer(sha, idx.files[p][1]))}
                siblings.append(s)
        created = repo.meta.get("created_at") or "2024-01-01T00:00:00.000Z"
        info = {
            "_id": hashlib.sha1(("%s/%s" % (rtype, repo.id)).encode()).hexdigest()[:24],
            "id": repo.id,
            "author": org,
            "sha": commit,
            "lastModified": cmeta.get("date") or created,
            "createdAt": created,
            "private": repo.private,
            "gated": repo.gated,
            "disabled": repo.disabled,
            "downloads": 0,
            "likes": 0,
            "tags": list(repo.meta.get("tags_list", [])),
            "cardData": {},
            "siblings": siblings,
        }
        if rtype == "model":
            info["modelId"] = repo.id
        if rtype == "space":
            info["sdk"] = "static"  # guess; spaces always have an sdk
        expand = q.get("expand")
        if expand:
            # The Hub returns only the requested properties (plus _id and id, a guess).
            # Unknown property names are ignored here; the Hub rejects them (400).
            keep = set(expand) | {"_id", "id"}
            info = {k: v for k, v in info.items() if k in keep}
        self._json(200, info)

    def _refs(self, rtype, org, name):
        repo = self._access(rtype, org, name, files=False)
        if repo is None:
            return

        def lst(key, prefix):
            return [{"name": (n if prefix != "refs/pr/" else prefix + n), "ref": prefix + n,
                     "targetCommit": c} for n, c in sorted(repo.refs(key).items())]
        self._json(200, {"branches": lst("branches", "refs/heads/"),
                         "tags": lst("tags", "refs/tags/"), "converts": [],
                         "pullRequests": lst("pull_requests", "refs/pr/")})

    def _tree(self, rtype, org, name, rev, path):
        repo = self._access(rtype, org, name, files=False)
        if repo is None:
            return
        q = urllib.parse.parse_qs(self._query, keep_blank_values=True)
        recursive = qbool((q.get("recursive") or ["false"])[-1])
        expand = qbool((q.get("expand") or ["false"])[-1])
        try:
            limit = int((q.get("limit") or [self.state.config["tree_page_limit"]])[-1])
            limit = max(1, min(limit, 10000))
        except ValueError:
            return self._error(400, "Invalid limit")
        offset = 0
        cursor = (q.get("cursor") or [None])[-1]
        if cursor:
            # The cursor pins the commit so later pages list the same tree even if the
            # branch moves (the Hub's cursor is opaque; this is our choice).
            try:
                c, off = base64.urlsafe_b64decode(cursor.encode() + b"==").decode().split(":")
                offset = int(off)
                if not HEX40.match(c) or offset < 0 or repo.resolve(c) != c:
                    raise ValueError
                commit = c
            except ValueError:
                return self._error(400, "Invalid cursor")
        else:
            commit = self._revision(repo, rev)
            if commit is None:
                return
        idx = repo.index(commit)
        path = path.strip("/")
        if path and not (idx.is_dir(path) or idx.is_file(path)):
            return self._error(404, "Entry not found", "EntryNotFound", [("X-Repo-Commit", commit)])
        # A file path lists just that file (guess; the spec says nothing).
        paths = [path] if idx.is_file(path) else idx.listing(path, recursive)
        page = paths[offset:offset + limit]
        entries = [idx.entry(p, repo, commit, expand) for p in page]
        hdrs = [("X-Repo-Commit", commit)]
        if offset + limit < len(paths):
            nq = [(k, v) for k, v in urllib.parse.parse_qsl(self._query, keep_blank_values=True)
                  if k not in ("cursor", "limit")]
            nq.append(("limit", str(limit)))
            tok = base64.urlsafe_b64encode(("%s:%d" % (commit, offset + limit)).encode())
            nq.append(("cursor", tok.decode().rstrip("=")))
            url = self._host_url() + self._rawpath + "?" + urllib.parse.urlencode(nq)
            hdrs.append(("Link", '<%s>; rel="next"' % url))
        self._json(200, entries, hdrs)

    def _paths_info(self, rtype, org, name, rev):
        repo = self._access(rtype, org, name, files=False)
        if repo is None:
            return
        ctype = (self.headers.get("Content-Type") or "").lower()
        try:
            if "json" in ctype:
                body = json.loads(self._body.decode("utf-8") or "{}")
                if not isinstance(body, dict):
                    raise ValueError
                paths = body.get("paths", [])
                expand = qbool(body.get("expand", False))
            else:
                form = urllib.parse.parse_qs(self._body.decode("utf-8"), keep_blank_values=True)
                paths = form.get("paths", [])
                expand = qbool((form.get("expand") or ["false"])[-1])
            if isinstance(paths, str):
                paths = [paths]
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                raise ValueError
        except ValueError:
            return self._error(400, "Invalid body: expected paths")
        if len(paths) > 2000:  # spec 1.4 [3rd-party]: up to 2000 paths per call
            return self._error(400, "Too many paths (max 2000)")
        commit = self._revision(repo, rev)
        if commit is None:
            return
        idx = repo.index(commit)
        out, seen = [], set()
        for p in paths:
            p = p.strip("/")
            if p in seen:
                continue
            seen.add(p)
            e = idx.entry(p, repo, commit, expand) if p else None
            if e is not None:
                out.append(e)
        self._json(200, out, [("X-Repo-Commit", commit)])

    def _resolve(self, rtype, org, name, rev, path, op):
        repo = self._access(rtype, org, name, files=True)
        if repo is None:
            return
        if op == "cache" and not HEX40.match(rev):
            return self._error(404, "Invalid rev id: %s" % rev, "RevisionNotFound")
        commit = self._revision(repo, rev)
        if commit is None:
            return
        idx = repo.index(commit)
        base = [("X-Repo-Commit", commit)]
        if not idx.is_file(path):
            return self._error(404, "Entry not found", "EntryNotFound", base)
        abspath, size = idx.files[path]
        fname = path.rsplit("/", 1)[-1]
        disp = "inline; filename*=UTF-8''%s; filename=\"%s\";" % (
            urllib.parse.quote(fname), fname.encode("ascii", "replace").decode().replace('"', "_"))
        ctype = "text/plain; charset=utf-8" if fname.endswith((".json", ".txt", ".md", ".py",
                                                                ".gitattributes")) \
            else "application/octet-stream"
        if op == "raw":
            if idx.is_lfs(path):
                ptr = lfs_pointer(idx.lfs_sha256(path), size)
                return self._serve_content(len(ptr), lambda: _BytesFile(ptr),
                                           base + [("ETag", '"%s"' % git_blob_sha1_bytes(ptr))],
                                           "text/plain; charset=utf-8")
            return self._serve_content(size, lambda: open(abspath, "rb"),
                                       base + [("ETag", '"%s"' % idx.blob_oid(path))], ctype)
        if idx.is_lfs(path):
            sha = idx.lfs_sha256(path)
            loc = self._cdn_url(rtype, org, name, commit, path, sha)
            body = ("Found. Redirecting to %s" % loc).encode()
            return self._reply(302, body, base + [
                ("Location", loc), ("X-Linked-Etag", '"%s"' % sha), ("X-Linked-Size", str(size)),
                ("ETag", '"%s"' % sha), ("Accept-Ranges", "bytes"), ("Vary", "Origin, Accept")],
                "text/plain; charset=utf-8")
        etag = idx.blob_oid(path)
        if op == "resolve" and self.state.config["resolve_cache_redirect"]:
            # Observed Hub behaviour (spec 1.1/1.5): a relative redirect to resolve-cache.
            # Status 307 is a guess (spec 4 lists 302 vs 307 as unknown).
            loc = "/api/resolve-cache/%ss/%s/%s/%s/%s?etag=%s" % (
                rtype, urllib.parse.quote(org), urllib.parse.quote(name), commit,
                urllib.parse.quote(path), urllib.parse.quote('"%s"' % etag, safe=""))
            return self._reply(307, b"", base + [("Location", loc), ("ETag", '"%s"' % etag)],
                               "text/plain; charset=utf-8")
        self._serve_content(size, lambda: open(abspath, "rb"),
                            base + [("ETag", '"%s"' % etag), ("Content-Disposition", disp),
                                    ("Vary", "Origin, Accept")], ctype)

    # ---- CDN

    def _sign(self, sha, repo_key, commit, path, expires):
        msg = "\n".join([sha, repo_key, commit, path, str(expires)]).encode()
        return hmac.new(self.state.secret, msg, hashlib.sha256).hexdigest()

    def _cdn_url(self, rtype, org, name, commit, path, sha):
        expires = int(time.time()) + int(self.state.config["cdn_url_ttl"])
        key = "%s/%s/%s" % (rtype, org, name)
        q = urllib.parse.urlencode([("repo", key), ("commit", commit), ("path", path),
                                    ("Expires", str(expires)),
                                    ("Signature", self._sign(sha, key, commit, path, expires)),
                                    ("Key-Pair-Id", "SHOALTESTKEY")])
        return "%s/lfs/%s?%s" % (self._host_url("cdn"), sha, q)

    def _handle_cdn(self):
        m = re.fullmatch(r"/lfs/([0-9a-f]{64})", self._rawpath)
        if not m:
            return self._reply(404, b"Not Found", ctype="text/plain")
        if not self._method("GET", "HEAD"):
            return
        sha = m.group(1)
        q = dict(urllib.parse.parse_qsl(self._query, keep_blank_values=True))
        try:
            key, commit, path, expires = q["repo"], q["commit"], q["path"], int(q["Expires"])
            sig = q["Signature"]
        except (KeyError, ValueError):
            return self._reply(403, b"Missing or malformed signature", ctype="text/plain")
        if not hmac.compare_digest(sig, self._sign(sha, key, commit, path, expires)):
            return self._reply(403, b"Invalid signature", ctype="text/plain")
        if expires < time.time():
            return self._reply(403, b"Request has expired", ctype="text/plain")
        parts = key.split("/")
        repo = self.state.store.get(*parts) if len(parts) == 3 else None
        idx = repo.index(commit) if repo and repo.has_commit(commit) else None
        if idx is None or not idx.is_file(path) or not idx.is_lfs(path) or idx.lfs_sha256(path) != sha:
            return self._reply(404, b"Not Found", ctype="text/plain")
        abspath, size = idx.files[path]
        fname = path.rsplit("/", 1)[-1]
        self._serve_content(size, lambda: open(abspath, "rb"), [
            ("ETag", '"%s"' % sha),
            ("Content-Disposition", "attachment; filename*=UTF-8''%s" % urllib.parse.quote(fname)),
            ("Cache-Control", "public, max-age=604800, immutable")])

    # ---- /_test

    def _handle_test(self):
        p = self._rawpath
        st = self.state
        try:
            body = json.loads(self._body.decode("utf-8")) if self._body.strip() else None
        except ValueError:
            return self._reply(400, b'{"error":"invalid JSON"}')
        if p == "/_test/stats" and self.command in ("GET", "HEAD"):
            return self._json(200, st.stats())
        if p == "/_test/reset" and self.command == "POST":
            st.reset()
            return self._json(200, {"ok": True})
        if p == "/_test/faults":
            if self.command == "POST":
                append = False
                if isinstance(body, dict) and "faults" in body:
                    append = bool(body.get("append"))
                    body = body["faults"]
                try:
                    st.set_faults(parse_faults(body if body is not None else []), append)
                except FaultError as e:
                    return self._json(400, {"error": str(e)})
            with st.lock:
                current = [dict(f) for f in st.faults]
            return self._json(200, current)
        if p == "/_test/config":
            if self.command == "POST":
                if not isinstance(body, dict) or not set(body) <= set(st.config):
                    return self._json(400, {"error": "keys: %s" % sorted(st.config)})
                with st.lock:
                    st.config.update(body)
            with st.lock:
                current = dict(st.config)
            return self._json(200, current)
        self._json(404, {"error": "unknown test endpoint"})


class _BytesFile:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def seek(self, pos):
        self.pos = pos

    def read(self, n):
        b = self.data[self.pos:self.pos + n]
        self.pos += len(b)
        return b


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port, role, state):
        self.role = role
        self.state = state
        super().__init__((HOST, port), Handler)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError, ClientGone, socket.timeout)):
            return
        super().handle_error(request, client_address)


def parse_rate_limits(s):
    out = dict(DEFAULT_RATE_LIMITS)
    for part in filter(None, (s or "").split(",")):
        k, _, v = part.partition("=")
        if k.strip() not in out:
            raise ValueError("unknown rate-limit bucket %r" % k)
        out[k.strip()] = int(v)
    return out


def main(argv=None):
    global HOST
    ap = argparse.ArgumentParser(description="Shoal test hub (HF Hub test double)")
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cdn-port", type=int, default=0)
    ap.add_argument("--ready-file")
    ap.add_argument("--faults", help="JSON list of faults, or @FILE")
    ap.add_argument("--rate-limit", help="api=N,resolvers=N,pages=N per 5-minute window")
    ap.add_argument("--resolve-cache-redirect", action="store_true",
                    help="answer resolve of regular files with a relative 307 to resolve-cache")
    ap.add_argument("--max-lifetime", type=float, default=0,
                    help="exit after this many seconds (0 = run until killed)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--host", default=HOST,
                    help="address to bind (default 127.0.0.1; benchmarks use a network "
                         "namespace address in 198.18.0.0/15)")
    a = ap.parse_args(argv)
    HOST = a.host
    if not os.path.isdir(a.root):
        ap.error("--root %s is not a directory" % a.root)
    try:
        limits = parse_rate_limits(a.rate_limit)
        faults = []
        if a.faults:
            text = a.faults
            if text.startswith("@"):
                with open(text[1:], encoding="utf-8") as f:
                    text = f.read()
            faults = parse_faults(json.loads(text))
    except (ValueError, OSError) as e:
        ap.error(str(e))
    state = State(RepoStore(a.root), a.verbose, limits, a.resolve_cache_redirect)
    state.set_faults(faults)
    hub = Server(a.port, "hub", state)
    cdn = Server(a.cdn_port, "cdn", state)
    state.ports = {"hub": hub.server_address[1], "cdn": cdn.server_address[1]}
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True)
               for s in (hub, cdn)]
    for t in threads:
        t.start()
    if a.ready_file:
        info = {"pid": os.getpid(), "port": state.ports["hub"], "cdn_port": state.ports["cdn"],
                "url": "http://%s:%d" % (HOST, state.ports["hub"]),
                "cdn_url": "http://%s:%d" % (HOST, state.ports["cdn"])}
        tmp = a.ready_file + ".tmp%d" % os.getpid()
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(info, f)
        os.replace(tmp, a.ready_file)
    print("SHOAL_HUB_READY port=%d cdn_port=%d" % (state.ports["hub"], state.ports["cdn"]), flush=True)
    try:
        # The main thread only waits for the lifetime to end (or forever when 0).
        state.stop_event.wait(a.max_lifetime if a.max_lifetime > 0 else None)
    except KeyboardInterrupt:
        pass
    state.stop_event.set()
    for s in (hub, cdn):
        s.shutdown()
        s.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
