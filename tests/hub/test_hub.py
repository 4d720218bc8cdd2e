"""test_hub.py - tests of the Shoal test hub (hub.py) and its repo generator (make_model.py).

Starts the real server as a subprocess (python3 -B, port 0) on repos written by make_model.py
into a temporary directory, and talks to it with http.client only. Run from this directory:
    python3 -B -m unittest -v test_hub
Nothing is written outside tempfile directories.
"""
import sys

sys.dont_write_bytecode = True

import hashlib  # noqa: E402
import http.client  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import select  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import unittest  # noqa: E402
import urllib.parse  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
HUB_PY = os.path.join(HERE, "hub.py")
MAKE_PY = os.path.join(HERE, "make_model.py")
PY = sys.executable or "python3"
READY_TIMEOUT = 20.0
USER = "hf_user_without_grants"
GRANTED = "hf_granted_reader"
INVALID_CREDS = "Invalid credentials in Authorization header"


def git_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def git_tree(entries):
    """Independent git tree hash: entries (name, is_dir, oid)."""
    data = b""
    for name, is_dir, oid in sorted(entries, key=lambda e: e[0].encode() + (b"/" if e[1] else b"")):
        data += (b"40000 " if is_dir else b"100644 ") + name.encode() + b"\0" + bytes.fromhex(oid)
    return hashlib.sha1(b"tree %d\0" % len(data) + data).hexdigest()


def pointer(sha256, size):
    return ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
            % (sha256, size)).encode()


def make_model(root, repo, *args, check=True):
    p = subprocess.run([PY, "-B", MAKE_PY, "--root", root, "--repo", repo] + list(args),
                       capture_output=True, text=True, timeout=120)
    if not check:
        return p
    if p.returncode != 0:
        raise AssertionError("make_model failed: %s" % p.stderr)
    return json.loads(p.stdout)


class HubProcess:
    """The server as a subprocess; ready when its ready line arrives (bounded wait)."""

    def __init__(self, root, *extra):
        self.dir = tempfile.mkdtemp(prefix="shoal-hub-run-")
        self.ready_path = os.path.join(self.dir, "ready.json")
        self.err_path = os.path.join(self.dir, "stderr.txt")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(
            [PY, "-B", HUB_PY, "--root", root, "--ready-file", self.ready_path,
             "--max-lifetime", "600"] + list(extra),
            stdout=subprocess.PIPE, stderr=self.err, cwd=self.dir)
        deadline = time.monotonic() + READY_TIMEOUT
        line = b""
        for _ in range(1000):
            if b"\n" in line:
                break
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise AssertionError("hub did not become ready: %r %s" % (line, self.stderr()))
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    self.stop()
                    raise AssertionError("hub exited: %s" % self.stderr())
                line += chunk
        self.ready_line = line.decode().strip()
        with open(self.ready_path, encoding="utf-8") as f:
            self.info = json.load(f)
        self.port = self.info["port"]
        self.cdn_port = self.info["cdn_port"]

    def stderr(self):
        try:
            with open(self.err_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc.stdout.close()
        self.err.close()
        text = self.stderr()
        shutil.rmtree(self.dir, ignore_errors=True)
        return text


ROOT = None
HUB = None
A1 = A2 = PR = GATED = PRIVATE = DATA = SPACE = MANY = None


def setUpModule():
    global ROOT, HUB, A1, A2, PR, GATED, PRIVATE, DATA, SPACE, MANY
    ROOT = tempfile.mkdtemp(prefix="shoal-hub-root-")
    try:
        A1 = make_model(ROOT, "model/org/model-a", "--seed", "1", "--tag", "v1",
                        "--user-token", USER, "--files",
                        "config.json:small,model.safetensors:3M,tokenizer.json:40K,"
                        "sub/extra.bin:256K,sub/deep/notes.txt:1K,README.md:small")
        A2 = make_model(ROOT, "model/org/model-a", "--seed", "2", "--files", "config.json:small",
                        "--delete", "README.md")
        PR = make_model(ROOT, "model/org/model-a", "--revision", "refs/pr/1", "--files", "pr.txt:small")
        GATED = make_model(ROOT, "model/org/gated-a", "--files", "config.json:small,model.safetensors:64K",
                           "--gated", "manual", "--token", GRANTED)
        PRIVATE = make_model(ROOT, "model/org/private-a", "--files", "config.json:small",
                             "--private", "--token", GRANTED)
        make_model(ROOT, "model/org/disabled-a", "--files", "config.json:small", "--disabled")
        DATA = make_model(ROOT, "dataset/org/data-a", "--files", "data/train.parquet:128K,README.md:small")
        SPACE = make_model(ROOT, "space/org/space-a", "--files", "app.py:small")
        MANY = make_model(ROOT, "model/org/many", "--no-gitattributes", "--files",
                          ",".join("f/%02d.txt:small" % i for i in range(25)))
        HUB = HubProcess(ROOT)
    except BaseException:
        shutil.rmtree(ROOT, ignore_errors=True)
        raise


def tearDownModule():
    text = HUB.stop() if HUB else ""
    shutil.rmtree(ROOT, ignore_errors=True)
    if "Traceback" in text:
        raise AssertionError("hub wrote tracebacks to stderr:\n" + text)


def request(method, path, headers=None, body=None, port=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port or HUB.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def get_json(path, headers=None, port=None):
    status, h, data = request("GET", path, headers, port=port)
    return status, h, (json.loads(data) if data else None)


def control(path, obj=None, port=None):
    body = None if obj is None else json.dumps(obj).encode()
    status, _, data = request("POST" if body is not None else "GET", path, body=body,
                              headers={"Content-Type": "application/json"}, port=port)
    return status, json.loads(data)


def stats():
    return control("/_test/stats")[1]


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


def split_url(url):
    u = urllib.parse.urlsplit(url)
    return u.port, u.path + ("?" + u.query if u.query else "")


def disk(info, path):
    rtype, org, name = info["repo"].split("/")
    with open(os.path.join(ROOT, rtype + "s", org, name, "commits", info["commit"], *path.split("/")), "rb") as f:
        return f.read()


class HubTest(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.assertEqual(control("/_test/faults", [])[0], 200)
        self.assertEqual(control("/_test/config", {"resolve_cache_redirect": False, "tree_page_limit": 1000,
                                                   "cdn_url_ttl": 3600, "ignore_range": False})[0], 200)
        self.assertEqual(control("/_test/reset", {})[0], 200)

    def assertError(self, resp, status, code, message=None):
        st, h, data = resp
        self.assertEqual(st, status, data)
        self.assertEqual(h.get("X-Error-Code"), code)
        if data:
            self.assertEqual(json.loads(data)["error"], h.get("X-Error-Message"))
        if message is not None:
            self.assertEqual(h.get("X-Error-Message"), message)

    def cdn_location(self, path="/org/model-a/resolve/main/model.safetensors", headers=None):
        st, h, _ = request("HEAD", path, headers)
        self.assertEqual(st, 302)
        port, p = split_url(h["Location"])
        self.assertEqual(port, HUB.cdn_port)
        return p, h


# ------------------------------------------------------------------------------ startup

class TestStartup(unittest.TestCase):
    def test_ready_file_and_line(self):
        self.assertEqual(HUB.ready_line, "SHOAL_HUB_READY port=%d cdn_port=%d" % (HUB.port, HUB.cdn_port))
        self.assertEqual(HUB.info["pid"], HUB.proc.pid)
        self.assertGreater(HUB.port, 0)
        self.assertGreater(HUB.cdn_port, 0)
        self.assertNotEqual(HUB.port, HUB.cdn_port)
        self.assertEqual(HUB.info["url"], "http://127.0.0.1:%d" % HUB.port)

    def test_faults_flag_and_rate_limit(self):
        faults = json.dumps([{"type": "503", "path": "/api/models/*", "retry_after": 3}])
        h2 = HubProcess(ROOT, "--faults", faults, "--rate-limit", "api=3")
        try:
            st, h, _ = request("GET", "/api/models/org/model-a", port=h2.port)
            self.assertEqual((st, h["Retry-After"]), (503, "3"))
            for _ in range(2):
                self.assertEqual(request("GET", "/api/models/org/model-a", port=h2.port)[0], 200)
            st, h, _ = request("GET", "/api/models/org/model-a", port=h2.port)
            self.assertEqual(st, 429)
            self.assertTrue(h["Retry-After"].isdigit())
            self.assertRegex(h["RateLimit"], r'^"api";r=0;t=\d+$')
            self.assertEqual(h["RateLimit-Policy"], '"fixed window";"api";q=3;w=300')
            # resolvers are a separate bucket
            self.assertEqual(request("GET", "/org/model-a/resolve/main/config.json", port=h2.port)[0], 200)
        finally:
            self.assertNotIn("Traceback", h2.stop())

    def test_bad_root(self):
        p = subprocess.run([PY, "-B", HUB_PY, "--root", os.path.join(ROOT, "missing")],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 2)


# ------------------------------------------------------------------------------ repo info

class TestRepoInfo(HubTest):
    def test_short_form(self):
        st, h, info = get_json("/api/models/org/model-a")
        self.assertEqual(st, 200)
        self.assertEqual(info["id"], "org/model-a")
        self.assertEqual(info["sha"], A2["commit"])
        self.assertIs(info["private"], False)
        self.assertIs(info["gated"], False)
        self.assertIn("lastModified", info)
        self.assertEqual([s["rfilename"] for s in info["siblings"]], sorted(A2["files"]))
        self.assertTrue(all(set(s) == {"rfilename"} for s in info["siblings"]))

    def test_revision_forms(self):
        for rev, want in [("main", A2), ("v1", A1), (A1["commit"], A1), ("HEAD", A2),
                          ("refs%2Fpr%2F1", PR), ("refs/pr/1", PR), ("refs%2Fheads%2Fmain", A2),
                          ("refs%2Ftags%2Fv1", A1)]:
            st, _, info = get_json("/api/models/org/model-a/revision/" + rev)
            self.assertEqual((st, info["sha"]), (200, want["commit"]), rev)

    def test_blobs(self):
        st, _, info = get_json("/api/models/org/model-a/revision/main?blobs=true")
        sib = {s["rfilename"]: s for s in info["siblings"]}
        f = A2["files"]["model.safetensors"]
        ptr = pointer(f["sha256"], f["size"])
        self.assertEqual(sib["model.safetensors"]["lfs"],
                         {"sha256": f["sha256"], "size": f["size"], "pointerSize": len(ptr)})
        self.assertEqual(sib["model.safetensors"]["blobId"], git_sha1(ptr))
        self.assertEqual(sib["config.json"]["blobId"], A2["files"]["config.json"]["etag"])
        self.assertEqual(sib["config.json"]["size"], A2["files"]["config.json"]["size"])
        self.assertNotIn("lfs", sib["config.json"])

    def test_expand(self):
        st, _, info = get_json("/api/models/org/model-a?expand=sha&expand=private")
        self.assertEqual(st, 200)
        self.assertEqual(info["sha"], A2["commit"])
        self.assertLessEqual(set(info), {"_id", "id", "sha", "private"})

    def test_errors(self):
        self.assertError(request("GET", "/api/models/org/model-a/revision/nope"), 404, "RevisionNotFound")
        self.assertError(request("GET", "/api/models/org/missing"), 401, "RepoNotFound")
        self.assertError(request("GET", "/api/models/org/missing", bearer(USER)), 404, "RepoNotFound")
        self.assertError(request("GET", "/api/models/org/data-a"), 401, "RepoNotFound")

    def test_dataset_and_space(self):
        st, _, info = get_json("/api/datasets/org/data-a")
        self.assertEqual((st, info["sha"]), (200, DATA["commit"]))
        self.assertIn("data/train.parquet", [s["rfilename"] for s in info["siblings"]])
        st, _, info = get_json("/api/spaces/org/space-a/revision/main")
        self.assertEqual((st, info["sha"]), (200, SPACE["commit"]))

    def test_refs(self):
        st, _, refs = get_json("/api/models/org/model-a/refs")
        self.assertEqual(st, 200)
        self.assertEqual(refs["branches"], [{"name": "main", "ref": "refs/heads/main",
                                             "targetCommit": A2["commit"]}])
        self.assertEqual(refs["tags"], [{"name": "v1", "ref": "refs/tags/v1", "targetCommit": A1["commit"]}])
        self.assertEqual(refs["pullRequests"][0]["ref"], "refs/pr/1")
        self.assertEqual(refs["pullRequests"][0]["targetCommit"], PR["commit"])


# ------------------------------------------------------------------------------ tree

class TestTree(HubTest):
    def test_recursive_entries(self):
        st, h, entries = get_json("/api/models/org/model-a/tree/main?recursive=true")
        self.assertEqual(st, 200)
        self.assertEqual(h["X-Repo-Commit"], A2["commit"])
        by = {e["path"]: e for e in entries}
        self.assertEqual(sorted(p for p, e in by.items() if e["type"] == "file"), sorted(A2["files"]))
        self.assertEqual(sorted(p for p, e in by.items() if e["type"] == "directory"), ["sub", "sub/deep"])
        cfg = A2["files"]["config.json"]
        self.assertEqual(by["config.json"], {"type": "file", "oid": cfg["etag"], "size": cfg["size"],
                                             "path": "config.json"})
        m = A2["files"]["model.safetensors"]
        ptr = pointer(m["sha256"], m["size"])
        self.assertEqual(by["model.safetensors"]["lfs"], {"oid": m["sha256"], "size": m["size"],
                                                          "pointerSize": len(ptr)})
        self.assertEqual(by["model.safetensors"]["oid"], git_sha1(ptr))
        self.assertEqual(by["model.safetensors"]["size"], m["size"])
        # directory oids are git tree hashes; the root tree is the one in the commit
        self.assertEqual(by["sub/deep"]["oid"], git_tree([("notes.txt", False, by["sub/deep/notes.txt"]["oid"])]))

        def tree_of(prefix):
            kids = [e for e in entries if e["path"].rpartition("/")[0] == prefix]
            return git_tree([(e["path"].rpartition("/")[2], e["type"] == "directory",
                              tree_of(e["path"]) if e["type"] == "directory" else e["oid"]) for e in kids])
        self.assertEqual(tree_of(""), A2["tree"])
        self.assertEqual(tree_of("sub"), by["sub"]["oid"])

    def test_non_recursive_and_subpath(self):
        st, _, entries = get_json("/api/models/org/model-a/tree/main")
        self.assertEqual(st, 200)
        self.assertTrue(all("/" not in e["path"] for e in entries))
        self.assertIn({"type": "directory", "path": "sub"}, [{"type": e["type"], "path": e["path"]} for e in entries])
        st, _, entries = get_json("/api/models/org/model-a/tree/main/sub")
        self.assertEqual(sorted(e["path"] for e in entries), ["sub/deep", "sub/extra.bin"])
        st, _, entries = get_json("/api/models/org/model-a/tree/main/sub?recursive=true")
        self.assertEqual(sorted(e["path"] for e in entries), ["sub/deep", "sub/deep/notes.txt", "sub/extra.bin"])

    def test_revisions_and_errors(self):
        st, h, entries = get_json("/api/models/org/model-a/tree/v1?recursive=true")
        self.assertEqual(h["X-Repo-Commit"], A1["commit"])
        self.assertIn("README.md", [e["path"] for e in entries])
        st, _, entries = get_json("/api/models/org/model-a/tree/%s" % A1["commit"])
        self.assertEqual(st, 200)
        self.assertError(request("GET", "/api/models/org/model-a/tree/main/nope"), 404, "EntryNotFound")
        self.assertError(request("GET", "/api/models/org/model-a/tree/nope"), 404, "RevisionNotFound")

    def test_pagination(self):
        base = "/api/models/org/many/tree/main?recursive=true"
        st, _, full = get_json(base + "&limit=1000")
        self.assertEqual(len(full), 26)  # 25 files + directory f
        for limit_q, page_size, pages in (("&limit=4", 4, 7), ("", 10, 3)):
            if not limit_q:
                control("/_test/config", {"tree_page_limit": 10})
            got, url, n = [], "http://127.0.0.1:%d%s%s" % (HUB.port, base, limit_q), 0
            for n in range(1, 50):
                port, path = split_url(url)
                st, h, page = get_json(path, port=port)
                self.assertEqual(st, 200)
                self.assertLessEqual(len(page), page_size)
                got += page
                link = h.get("Link")
                if not link:
                    break
                m = re.fullmatch(r'<(http://127\.0\.0\.1:\d+/[^>]*)>; rel="next"', link)
                self.assertTrue(m, link)
                url = m.group(1)
            self.assertEqual(n, pages)
            self.assertEqual(got, full)

    def test_expand_last_commit(self):
        st, _, entries = get_json("/api/models/org/model-a/tree/main?recursive=true&expand=true")
        by = {e["path"]: e for e in entries}
        self.assertEqual(by["config.json"]["lastCommit"]["id"], A2["commit"])
        self.assertEqual(by["model.safetensors"]["lastCommit"]["id"], A1["commit"])
        self.assertEqual(set(by["sub"]["lastCommit"]), {"id", "title", "date"})


# ------------------------------------------------------------------------------ paths-info

class TestPathsInfo(HubTest):
    URL = "/api/models/org/model-a/paths-info/main"

    def test_form_body(self):
        st, h, data = request("POST", self.URL, {"Content-Type": "application/x-www-form-urlencoded"},
                              "paths=config.json&paths=sub&paths=missing.txt&expand=false")
        self.assertEqual(st, 200)
        entries = json.loads(data)
        self.assertEqual([(e["path"], e["type"]) for e in entries], [("config.json", "file"), ("sub", "directory")])
        self.assertEqual(entries[0]["oid"], A2["files"]["config.json"]["etag"])

    def test_json_body(self):
        body = json.dumps({"paths": ["model.safetensors", "missing"], "expand": True})
        st, _, data = request("POST", self.URL, {"Content-Type": "application/json"}, body)
        entries = json.loads(data)
        self.assertEqual(len(entries), 1)
        self.assertEqual(entries[0]["lfs"]["oid"], A2["files"]["model.safetensors"]["sha256"])
        self.assertEqual(entries[0]["lastCommit"]["id"], A1["commit"])

    def test_unknown_paths_and_errors(self):
        st, _, data = request("POST", self.URL, {"Content-Type": "application/json"}, '{"paths": ["x", "y"]}')
        self.assertEqual((st, json.loads(data)), (200, []))
        self.assertError(request("POST", "/api/models/org/model-a/paths-info/nope",
                                 {"Content-Type": "application/json"}, '{"paths": ["x"]}'), 404, "RevisionNotFound")
        self.assertEqual(request("GET", self.URL)[0], 405)


# ------------------------------------------------------------------------------ resolve

class TestResolve(HubTest):
    def test_regular_get_and_head(self):
        url = "/org/model-a/resolve/main/config.json"
        want = disk(A2, "config.json")
        st, h, data = request("GET", url)
        self.assertEqual((st, data), (200, want))
        self.assertEqual(h["ETag"], '"%s"' % git_sha1(want))
        self.assertEqual(h["X-Repo-Commit"], A2["commit"])
        self.assertEqual(h["Content-Length"], str(len(want)))
        self.assertEqual(h["Accept-Ranges"], "bytes")
        self.assertIsNone(h.get("X-Linked-Size"))
        self.assertIn("X-Repo-Commit", h["Access-Control-Expose-Headers"])
        st, hh, data = request("HEAD", url)
        self.assertEqual((st, data), (200, b""))
        for k in ("ETag", "X-Repo-Commit", "Content-Length", "Accept-Ranges"):
            self.assertEqual(hh[k], h[k], k)

    def test_lfs_redirect_headers(self):
        m = A2["files"]["model.safetensors"]
        for method in ("HEAD", "GET"):
            st, h, _ = request(method, "/org/model-a/resolve/main/model.safetensors")
            self.assertEqual(st, 302)
            self.assertTrue(h["Location"].startswith("http://127.0.0.1:%d/" % HUB.cdn_port), h["Location"])
            self.assertRegex(h["Location"], r"[?&]Signature=[0-9a-f]{64}")
            self.assertEqual(h["X-Linked-Etag"], '"%s"' % m["sha256"])
            self.assertEqual(h["X-Linked-Size"], str(m["size"]))
            self.assertEqual(h["ETag"], '"%s"' % m["sha256"])
            self.assertEqual(h["X-Repo-Commit"], A2["commit"])
            self.assertEqual(h["Accept-Ranges"], "bytes")
            self.assertIsNone(h.get("X-Xet-Hash"))

    def test_cdn_download_without_authorization(self):
        m = A2["files"]["model.safetensors"]
        path, h = self.cdn_location(headers=bearer(USER))
        st, ch, data = request("GET", path, port=HUB.cdn_port)
        self.assertEqual(st, 200)
        self.assertEqual(len(data), m["size"])
        self.assertEqual(hashlib.sha256(data).hexdigest(), h["X-Linked-Etag"].strip('"'))
        self.assertEqual(ch["ETag"], '"%s"' % m["sha256"])
        st, ch, data = request("HEAD", path, port=HUB.cdn_port)
        self.assertEqual((st, ch["Content-Length"], data), (200, str(m["size"]), b""))
        s = stats()
        self.assertEqual(s["cdn_authorization"], [])
        self.assertEqual(s["cdn_requests_with_authorization"], 0)
        self.assertEqual(s["servers"]["cdn"]["requests"], 2)
        self.assertEqual(s["servers"]["cdn"]["bytes"], m["size"])

    def test_cdn_records_forwarded_authorization(self):
        path, _ = self.cdn_location()
        st, _, _ = request("GET", path, {"Authorization": "Bearer leaked", "Range": "bytes=0-0"},
                           port=HUB.cdn_port)
        self.assertEqual(st, 206)
        s = stats()
        self.assertEqual(s["cdn_authorization"], ["Bearer leaked"])
        self.assertEqual(s["cdn_requests_with_authorization"], 1)

    def test_cdn_signature_and_expiry(self):
        path, _ = self.cdn_location()
        bad = re.sub(r"Signature=[0-9a-f]", "Signature=x", path)
        self.assertEqual(request("GET", bad, port=HUB.cdn_port)[0], 403)
        other = path.replace("path=model.safetensors", "path=sub%2Fextra.bin")
        self.assertEqual(request("GET", other, port=HUB.cdn_port)[0], 403)
        control("/_test/config", {"cdn_url_ttl": -10})
        path, _ = self.cdn_location()
        self.assertEqual(request("GET", path, port=HUB.cdn_port)[0], 403)

    def test_revisions(self):
        st, h, data = request("GET", "/org/model-a/resolve/v1/README.md")
        self.assertEqual((st, data, h["X-Repo-Commit"]), (200, disk(A1, "README.md"), A1["commit"]))
        st, h, data = request("GET", "/org/model-a/resolve/%s/config.json" % A1["commit"])
        self.assertEqual((st, h["ETag"]), (200, '"%s"' % A1["files"]["config.json"]["etag"]))
        for rev in ("refs%2Fpr%2F1", "refs/pr/1"):
            st, h, data = request("GET", "/org/model-a/resolve/%s/pr.txt" % rev)
            self.assertEqual((st, h["X-Repo-Commit"], data), (200, PR["commit"], disk(PR, "pr.txt")))
        st, _, data = request("GET", "/org/model-a/resolve/main/sub/deep/notes.txt")
        self.assertEqual((st, data), (200, disk(A2, "sub/deep/notes.txt")))

    def test_errors(self):
        for method in ("GET", "HEAD"):
            r = request(method, "/org/model-a/resolve/main/README.md")  # deleted in commit 2
            self.assertError(r, 404, "EntryNotFound")
            self.assertEqual(r[1]["X-Repo-Commit"], A2["commit"])
            self.assertError(request(method, "/org/model-a/resolve/nope/config.json"), 404, "RevisionNotFound")
            self.assertError(request(method, "/org/missing/resolve/main/config.json"), 401, "RepoNotFound")
        self.assertError(request("GET", "/org/model-a/resolve/main/sub"), 404, "EntryNotFound")

    def test_dataset_and_space_prefixes(self):
        st, h, _ = request("HEAD", "/datasets/org/data-a/resolve/main/data/train.parquet")
        self.assertEqual((st, h["X-Linked-Size"]), (302, str(128 * 1024)))
        st, h, data = request("GET", "/datasets/org/data-a/resolve/main/README.md")
        self.assertEqual((st, data), (200, disk(DATA, "README.md")))
        st, h, data = request("GET", "/spaces/org/space-a/resolve/main/app.py")
        self.assertEqual((st, data), (200, disk(SPACE, "app.py")))
        self.assertError(request("GET", "/org/data-a/resolve/main/README.md"), 401, "RepoNotFound")

    def test_raw_returns_pointer(self):
        m = A2["files"]["model.safetensors"]
        st, h, data = request("GET", "/org/model-a/raw/main/model.safetensors")
        self.assertEqual((st, data), (200, pointer(m["sha256"], m["size"])))
        self.assertEqual(h["ETag"], '"%s"' % git_sha1(data))

    def test_resolve_cache(self):
        st, h, data = request("GET", "/api/resolve-cache/models/org/model-a/%s/config.json" % A1["commit"])
        self.assertEqual((st, data, h["X-Repo-Commit"]), (200, disk(A1, "config.json"), A1["commit"]))
        self.assertError(request("GET", "/api/resolve-cache/models/org/model-a/main/config.json"),
                         404, "RevisionNotFound")
        control("/_test/config", {"resolve_cache_redirect": True})
        st, h, _ = request("HEAD", "/org/model-a/resolve/main/config.json")
        self.assertEqual(st, 307)
        self.assertTrue(h["Location"].startswith("/api/resolve-cache/models/org/model-a/%s/config.json?"
                                                 % A2["commit"]), h["Location"])
        self.assertEqual(h["X-Repo-Commit"], A2["commit"])
        # huggingface_hub follows relative redirects with the path only
        st, h2, _ = request("HEAD", urllib.parse.urlsplit(h["Location"]).path)
        self.assertEqual((st, h2["ETag"]), (200, '"%s"' % A2["files"]["config.json"]["etag"]))
        self.assertEqual(h2["Content-Length"], str(A2["files"]["config.json"]["size"]))

    def test_keep_alive(self):
        conn = http.client.HTTPConnection("127.0.0.1", HUB.port, timeout=10)
        sockets = []
        try:
            for method, path, want in (("HEAD", "/org/model-a/resolve/main/config.json", 200),
                                       ("GET", "/org/model-a/resolve/main/nope", 404),
                                       ("GET", "/api/models/org/model-a", 200),
                                       ("HEAD", "/org/model-a/resolve/main/model.safetensors", 302)):
                conn.request(method, path)
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, want)
                sockets.append(conn.sock)
        finally:
            conn.close()
        self.assertEqual(len(set(map(id, sockets))), 1)

    def test_client_disconnect_mid_body(self):
        path, _ = self.cdn_location()
        conn = http.client.HTTPConnection("127.0.0.1", HUB.cdn_port, timeout=10)
        conn.request("GET", path)
        r = conn.getresponse()
        self.assertEqual(len(r.read(1000)), 1000)
        conn.sock.close()
        conn.close()
        self.assertEqual(request("GET", "/api/models/org/model-a")[0], 200)


# ------------------------------------------------------------------------------ ranges

class TestRange(HubTest):
    def check(self, path, rng, want_status, want_body=None, total=None, port=None):
        st, h, data = request("GET", path, {"Range": rng}, port=port)
        self.assertEqual(st, want_status, rng)
        if want_status == 206:
            a = want_body[0]
            self.assertEqual(h["Content-Range"], "bytes %d-%d/%d" % (a, a + len(want_body[1]) - 1, total))
            self.assertEqual(data, want_body[1])
            self.assertEqual(h["Content-Length"], str(len(data)))
        elif want_status == 416:
            self.assertEqual(h["Content-Range"], "bytes */%d" % total)
        elif want_status == 200:
            self.assertEqual(data, want_body)
        return h

    def test_hub_ranges(self):
        path = "/org/model-a/resolve/main/tokenizer.json"
        d = disk(A2, "tokenizer.json")
        n = len(d)
        self.check(path, "bytes=0-9", 206, (0, d[:10]), n)
        self.check(path, "bytes=100-", 206, (100, d[100:]), n)
        self.check(path, "bytes=-5", 206, (n - 5, d[-5:]), n)
        self.check(path, "bytes=10-99999999", 206, (10, d[10:]), n)
        self.check(path, "bytes=%d-" % n, 416, total=n)
        self.check(path, "bytes=%d-%d" % (n + 10, n + 20), 416, total=n)
        self.check(path, "bytes=5-2", 200, d)  # invalid: ignored
        self.check(path, "bytes=0-1,5-6", 200, d)  # multi-range: ignored
        st, h, data = request("HEAD", path, {"Range": "bytes=0-9"})
        self.assertEqual((st, h["Content-Length"], h["Content-Range"], data), (206, "10", "bytes 0-9/%d" % n, b""))

    def test_ignore_range(self):
        path = "/org/model-a/resolve/main/tokenizer.json"
        d = disk(A2, "tokenizer.json")
        control("/_test/config", {"ignore_range": True})
        h = self.check(path, "bytes=10-19", 200, d)
        self.assertNotIn("Content-Range", h)
        control("/_test/config", {"ignore_range": False})
        self.check(path, "bytes=10-19", 206, (10, d[10:20]), len(d))

    def test_cdn_ranges_and_safetensors_header(self):
        path, _ = self.cdn_location()
        d = disk(A2, "model.safetensors")
        n = len(d)
        self.check(path, "bytes=0-7", 206, (0, d[:8]), n, port=HUB.cdn_port)
        self.check(path, "bytes=-100", 206, (n - 100, d[-100:]), n, port=HUB.cdn_port)
        self.check(path, "bytes=%d-" % (n + 5), 416, total=n, port=HUB.cdn_port)
        hlen = int.from_bytes(d[:8], "little")
        st, _, hdr = request("GET", path, {"Range": "bytes=8-%d" % (7 + hlen)}, port=HUB.cdn_port)
        meta = json.loads(hdr)
        self.assertEqual(8 + hlen + meta["weight"]["data_offsets"][1], n)


# ------------------------------------------------------------------------------ auth

class TestAuth(HubTest):
    def test_gated(self):
        url = "/org/gated-a/resolve/main/config.json"
        self.assertError(request("GET", url), 401, "GatedRepo")
        self.assertError(request("HEAD", url, bearer(USER)), 403, "GatedRepo")
        self.assertError(request("GET", url, bearer("hf_unknown")), 401, None, INVALID_CREDS)
        st, _, data = request("GET", url, bearer(GRANTED))
        self.assertEqual((st, data), (200, disk(GATED, "config.json")))
        st, h, _ = request("HEAD", "/org/gated-a/resolve/main/model.safetensors", bearer(GRANTED))
        self.assertEqual(st, 302)
        # the CDN URL works without the token
        port, path = split_url(h["Location"])
        st, _, data = request("GET", path, port=port)
        self.assertEqual((st, hashlib.sha256(data).hexdigest()), (200, GATED["files"]["model.safetensors"]["sha256"]))
        # metadata stays readable
        st, _, info = get_json("/api/models/org/gated-a")
        self.assertEqual((st, info["gated"]), (200, "manual"))
        self.assertEqual(get_json("/api/models/org/gated-a/tree/main")[0], 200)

    def test_private(self):
        for path in ("/api/models/org/private-a", "/org/private-a/resolve/main/config.json",
                     "/api/models/org/private-a/tree/main"):
            self.assertError(request("GET", path), 401, "RepoNotFound")
            self.assertError(request("GET", path, bearer(USER)), 404, "RepoNotFound")
            self.assertEqual(request("GET", path, bearer(GRANTED))[0], 200, path)
        st, _, info = get_json("/api/models/org/private-a", bearer(GRANTED))
        self.assertIs(info["private"], True)

    def test_disabled(self):
        for path in ("/api/models/org/disabled-a", "/org/disabled-a/resolve/main/config.json"):
            self.assertError(request("GET", path), 403, None, "Access to this resource is disabled.")

    def test_invalid_credentials_on_public_repo(self):
        self.assertError(request("GET", "/org/model-a/resolve/main/config.json", bearer("hf_unknown")),
                         401, None, INVALID_CREDS)
        self.assertError(request("GET", "/api/models/org/model-a", {"Authorization": "Basic eDp5"}),
                         401, None, INVALID_CREDS)
        self.assertEqual(request("GET", "/org/model-a/resolve/main/config.json", bearer(USER))[0], 200)


# ------------------------------------------------------------------------------ faults

class TestFaults(HubTest):
    CFG = "/org/model-a/resolve/main/config.json"
    TOK = "/org/model-a/resolve/main/tokenizer.json"

    def faults(self, lst):
        st, out = control("/_test/faults", lst)
        self.assertEqual(st, 200, out)
        return out

    def test_429_retry_after(self):
        self.faults([{"type": "429", "path": "*/resolve/main/config.json", "retry_after": 2}])
        self.assertEqual(request("GET", self.TOK)[0], 200)  # other paths unaffected
        st, h, data = request("GET", self.CFG)
        self.assertEqual((st, h["Retry-After"]), (429, "2"))
        self.assertEqual(h["RateLimit"], '"resolvers";r=0;t=2')
        self.assertIn("error", json.loads(data))
        self.assertEqual(request("GET", self.CFG)[0], 200)

    def test_503_500_and_status(self):
        self.faults([{"type": "503", "path": self.CFG, "retry_after": 5},
                     {"type": "503", "path": self.CFG},
                     {"type": "500", "path": self.CFG},
                     {"type": "status", "code": 504, "path": self.CFG}])
        st, h, _ = request("GET", self.CFG)
        self.assertEqual((st, h["Retry-After"]), (503, "5"))
        st, h, _ = request("HEAD", self.CFG)
        self.assertEqual((st, h.get("Retry-After")), (503, None))
        self.assertEqual(request("GET", self.CFG)[0], 500)
        self.assertEqual(request("GET", self.CFG)[0], 504)
        self.assertEqual(request("GET", self.CFG)[0], 200)

    def test_count_server_and_method_filters(self):
        self.faults([{"type": "503", "server": "cdn", "count": 2},
                     {"type": "500", "path": self.CFG, "method": "GET"}])
        path, _ = self.cdn_location()  # the hub is not affected
        self.assertEqual(request("HEAD", path, port=HUB.cdn_port)[0], 503)
        self.assertEqual(request("GET", path, {"Range": "bytes=0-0"}, port=HUB.cdn_port)[0], 503)
        self.assertEqual(request("GET", path, {"Range": "bytes=0-0"}, port=HUB.cdn_port)[0], 206)
        self.assertEqual(request("HEAD", self.CFG)[0], 200)
        self.assertEqual(request("GET", self.CFG)[0], 500)

    def test_stall(self):
        path, _ = self.cdn_location()
        self.faults([{"type": "stall", "path": "/lfs/*", "after_bytes": 1000, "seconds": 1.5}])
        conn = http.client.HTTPConnection("127.0.0.1", HUB.cdn_port, timeout=0.5)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(len(r.read(1000)), 1000)
            t0 = time.monotonic()
            with self.assertRaises(TimeoutError):
                r.read()
            self.assertLess(time.monotonic() - t0, 1.4)
        finally:
            conn.close()

    def test_truncate(self):
        d = disk(A2, "tokenizer.json")
        self.faults([{"type": "truncate", "path": self.TOK, "after_bytes": 1000}])
        # HEAD has no body: the fault stays pending
        self.assertEqual(request("HEAD", self.TOK)[0], 200)
        self.assertEqual(len(control("/_test/faults")[1]), 1)
        conn = http.client.HTTPConnection("127.0.0.1", HUB.port, timeout=10)
        try:
            conn.request("GET", self.TOK)
            r = conn.getresponse()
            self.assertEqual(r.headers["Content-Length"], str(len(d)))
            with self.assertRaises(http.client.IncompleteRead) as cm:
                r.read()
            self.assertEqual(cm.exception.partial, d[:1000])
        finally:
            conn.close()
        self.assertEqual(request("GET", self.TOK)[2], d)

    def test_truncate_cdn_default_half(self):
        path, h = self.cdn_location()
        n = int(h["X-Linked-Size"])
        self.faults([{"type": "truncate", "server": "cdn"}])
        conn = http.client.HTTPConnection("127.0.0.1", HUB.cdn_port, timeout=10)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            with self.assertRaises(http.client.IncompleteRead) as cm:
                r.read()
            self.assertEqual(len(cm.exception.partial), n // 2)
        finally:
            conn.close()

    def test_corrupt(self):
        path, h = self.cdn_location()
        want = h["X-Linked-Etag"].strip('"')
        self.faults([{"type": "corrupt", "path": "/lfs/*", "offset": 12345}])
        st, _, data = request("GET", path, port=HUB.cdn_port)
        self.assertEqual(st, 200)
        self.assertNotEqual(hashlib.sha256(data).hexdigest(), want)
        good = disk(A2, "model.safetensors")
        self.assertEqual(len(data), len(good))
        self.assertEqual([i for i in range(20000) if data[i] != good[i]], [12345])
        self.assertEqual(data[20000:], good[20000:])
        st, _, data = request("GET", path, port=HUB.cdn_port)
        self.assertEqual(hashlib.sha256(data).hexdigest(), want)

    def test_slow(self):
        path, _ = self.cdn_location()
        n, rate = 128 * 1024, 256 * 1024
        self.faults([{"type": "slow", "path": "/lfs/*", "rate": rate}])
        t0 = time.monotonic()
        st, _, data = request("GET", path, {"Range": "bytes=0-%d" % (n - 1)}, port=HUB.cdn_port)
        elapsed = time.monotonic() - t0
        self.assertEqual((st, len(data)), (206, n))
        self.assertEqual(data, disk(A2, "model.safetensors")[:n])
        self.assertGreaterEqual(elapsed, 0.8 * (n - rate / 20) / rate)
        self.assertLessEqual(n / elapsed, rate * 1.5)

    def test_fault_endpoint(self):
        st, out = control("/_test/faults", [{"type": "bogus"}])
        self.assertEqual(st, 400)
        self.faults([{"type": "500", "path": "/nowhere"}])
        out = self.faults({"faults": [{"type": "429", "path": "/nowhere2"}], "append": True})
        self.assertEqual([f["type"] for f in out], ["500", "429"])
        # /_test requests are never faulted nor counted
        self.faults([{"type": "500"}])
        self.assertEqual(control("/_test/stats")[0], 200)
        self.assertEqual(request("GET", "/api/models/org/model-a")[0], 500)
        self.assertEqual(stats()["servers"]["hub"]["requests"], 1)


# ------------------------------------------------------------------------------ stats

class TestStats(HubTest):
    def test_counters(self):
        cfg = "/org/model-a/resolve/main/config.json"
        n = A2["files"]["config.json"]["size"]
        request("GET", cfg)
        path, _ = self.cdn_location()
        request("GET", path, {"Range": "bytes=0-99"}, port=HUB.cdn_port)
        s = stats()
        self.assertEqual(s["servers"]["hub"]["requests"], 2)
        self.assertEqual(s["servers"]["cdn"]["requests"], 1)
        self.assertEqual(s["servers"]["cdn"]["bytes"], 100)
        self.assertEqual(s["servers"]["cdn"]["status"], {"206": 1})
        self.assertEqual(s["servers"]["hub"]["status"], {"200": 1, "302": 1})
        self.assertEqual(s["paths"]["hub"][cfg], {"requests": 1, "bytes": n, "methods": {"GET": 1}})
        cdn_path = urllib.parse.urlsplit(path).path
        self.assertEqual(s["paths"]["cdn"][cdn_path]["bytes"], 100)
        self.assertEqual([(e["server"], e["method"], e["status"]) for e in s["log"]],
                         [("hub", "GET", 200), ("hub", "HEAD", 302), ("cdn", "GET", 206)])
        self.assertEqual(s["log"][2]["range"], "bytes=0-99")
        control("/_test/reset", {})
        s = stats()
        self.assertEqual(s["servers"]["hub"], {"requests": 0, "bytes": 0, "status": {}})
        self.assertEqual((s["paths"], s["log"]), ({"hub": {}, "cdn": {}}, []))

    def test_rate_limit_headers(self):
        _, h, _ = request("GET", "/api/models/org/model-a")
        self.assertRegex(h["RateLimit"], r'^"api";r=\d+;t=\d+$')
        self.assertRegex(h["RateLimit-Policy"], r'^"fixed window";"api";q=\d+;w=300$')
        _, h, _ = request("HEAD", "/org/model-a/resolve/main/config.json")
        self.assertRegex(h["RateLimit"], r'^"resolvers";r=\d+;t=\d+$')
        self.assertTrue(h["X-Request-Id"])


# ------------------------------------------------------------------------------ make_model

class TestMakeModel(unittest.TestCase):
    FILES = "model.safetensors:300K,config.json:small,notes.txt:1K,blob.dat:5K,sub/w.bin:2K:git,big.txt:3K:lfs"

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="shoal-make-model-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def root(self, name):
        return os.path.join(self.tmp, name)

    def read_all(self, root, info):
        return {p: disk_at(root, info, p) for p in info["files"]}

    def test_deterministic(self):
        a = make_model(self.root("a"), "model/o/n", "--seed", "7", "--files", self.FILES, "--lfs-threshold", "4K")
        b = make_model(self.root("b"), "model/o/n", "--seed", "7", "--files", self.FILES, "--lfs-threshold", "4K")
        c = make_model(self.root("c"), "model/o/n", "--seed", "8", "--files", self.FILES, "--lfs-threshold", "4K")
        self.assertRegex(a["commit"], r"^[0-9a-f]{40}$")
        self.assertEqual(a["commit"], b["commit"])
        self.assertEqual(self.read_all(self.root("a"), a), self.read_all(self.root("b"), b))
        self.assertNotEqual(a["commit"], c["commit"])
        self.assertNotEqual(a["files"]["model.safetensors"]["sha256"], c["files"]["model.safetensors"]["sha256"])

    def test_formats_sizes_and_lfs(self):
        r = self.root("r")
        info = make_model(r, "model/o/n", "--files", self.FILES, "--lfs-threshold", "4K")
        f = info["files"]
        self.assertEqual({p: f[p]["size"] for p in f if p != ".gitattributes"},
                         {"model.safetensors": 300 * 1024, "config.json": f["config.json"]["size"],
                          "notes.txt": 1024, "blob.dat": 5 * 1024, "sub/w.bin": 2048, "big.txt": 3072})
        self.assertEqual({p for p in f if f[p]["lfs"]}, {"model.safetensors", "blob.dat", "big.txt"})
        for p, e in f.items():
            data = disk_at(r, info, p)
            self.assertEqual(hashlib.sha256(data).hexdigest(), e["sha256"])
            self.assertEqual(e["etag"], e["sha256"] if e["lfs"] else git_sha1(data))
        st = disk_at(r, info, "model.safetensors")
        hlen = int.from_bytes(st[:8], "little")
        hdr = json.loads(st[8:8 + hlen])
        self.assertEqual(8 + hlen + hdr["weight"]["data_offsets"][1], len(st))
        self.assertIsInstance(json.loads(disk_at(r, info, "config.json")), dict)
        ga = disk_at(r, info, ".gitattributes").decode()
        self.assertIn("model.safetensors filter=lfs", ga)
        self.assertNotIn("config.json", ga)

    def test_second_commit_and_flags(self):
        r = self.root("r")
        c1 = make_model(r, "model/o/n", "--files", "model.safetensors:64K,config.json:small", "--tag", "v1")
        c2 = make_model(r, "model/o/n", "--files", "config.json:small", "--seed", "9")
        self.assertEqual(c2["parents"], [c1["commit"]])
        self.assertEqual(c2["files"]["model.safetensors"], c1["files"]["model.safetensors"])
        self.assertNotEqual(c2["files"]["config.json"]["sha256"], c1["files"]["config.json"]["sha256"])
        self.assertTrue(os.path.samefile(
            os.path.join(r, "models/o/n/commits", c1["commit"], "model.safetensors"),
            os.path.join(r, "models/o/n/commits", c2["commit"], "model.safetensors")))
        c3 = make_model(r, "model/o/n", "--gated", "auto", "--token", "t1", "--private")
        self.assertEqual(c3["commit"], c2["commit"])
        with open(os.path.join(r, "models/o/n/repo.json"), encoding="utf-8") as f:
            meta = json.load(f)
        self.assertEqual((meta["gated"], meta["private"], meta["tokens"]), ("auto", True, ["t1"]))
        self.assertEqual((meta["tags"]["v1"], meta["branches"]["main"]), (c1["commit"], c2["commit"]))

    def test_bad_arguments(self):
        for args in (["--files", "x.bin:abc"], ["--files", "../x:1K"], ["--repo", "model/o"]):
            p = make_model(self.root("r"), "model/o/n", *args, check=False)
            self.assertEqual(p.returncode, 2, args)


def disk_at(root, info, path):
    rtype, org, name = info["repo"].split("/")
    with open(os.path.join(root, rtype + "s", org, name, "commits", info["commit"], *path.split("/")), "rb") as f:
        return f.read()


if __name__ == "__main__":
    unittest.main()
