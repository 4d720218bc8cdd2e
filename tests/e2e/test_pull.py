"""test_pull.py - shoald + shoal pull against the test hub, end to end.

One hub and one node serve all cases; each case pulls into its own cache directory.
What a user relies on: the exported cache is what huggingface_hub expects, with every
file's bytes right; pulling again fetches nothing; every injected fault is survived
with correct data; every Hub error reaches the user as one clear line; a node killed
mid-pull resumes, fetching only what it had not stored.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import unittest

import nodeenv
from nodeenv import Hub, Node

CHECK = os.path.join(nodeenv.SRC, "tests", "unit", "hf_cache_check.py")
MODEL_FILES = ("model-00001.safetensors:24M,model-00002.safetensors:9M,config.json:small,"
               "tokenizer.json:300K,README.md:2K,sub/empty.txt:0:git")


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


class PullTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = nodeenv.tmpdir()
        hubroot = os.path.join(cls.root, "hub")
        os.makedirs(hubroot)
        cls.hub = Hub(hubroot)
        cls.model = cls.hub.make("model/org/name", MODEL_FILES, "--seed", "1", "--tag", "v1")
        cls.node = Node(cls.root, cls.hub.url, extra=("--hub-timeout", "2"))
        cls.n = 0

    @classmethod
    def tearDownClass(cls):
        cls.node.stop()
        cls.hub.stop()
        if os.environ.get("SHOAL_KEEP_TMP"):
            print("kept", cls.root, file=sys.stderr)
        else:
            nodeenv.rmtree(cls.root)

    def cache(self):
        PullTest.n += 1
        return os.path.join(self.root, "cache%d" % PullTest.n)

    def repo_files(self, repo, commit):
        kind, _, name = repo.partition("/")
        base = os.path.join(self.hub.root, kind + "s", name, "commits", commit)
        out = []
        for d, _, files in os.walk(base):
            for f in files:
                p = os.path.join(d, f)
                rel = os.path.relpath(p, base)
                out.append({"path": rel, "size": os.path.getsize(p), "sha256": sha256_file(p)})
        return sorted(out, key=lambda e: e["path"])

    def check_cache(self, cache, repo, rev, commit, only=None):
        files = self.repo_files(repo, commit)
        if only:
            files = [f for f in files if only(f["path"])]
        man = os.path.join(self.root, "manifest.json")
        with open(man, "w") as f:
            json.dump(files, f)
        r = subprocess.run([sys.executable, "-B", CHECK, cache, repo, rev, man],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr + r.stdout)
        return files

    def pull(self, *args, cache=None, code=0):
        env = {"HF_HUB_CACHE": cache} if cache else {}
        r = self.node.shoal("pull", *args, env=env)
        self.assertEqual(r.returncode, code,
                         "shoal pull %s: exit %d\nstdout: %s\nstderr: %s" %
                         (" ".join(args), r.returncode, r.stdout, r.stderr[-3000:]))
        return r

    def fresh(self, name, files, seed, *extra):
        info = self.hub.make("model/org/" + name, files, "--seed", str(seed), *extra)
        return info

    # --- the main path ----------------------------------------------------------------

    def test_pull_exports_cache_and_again_fetches_nothing(self):
        cache = self.cache()
        self.hub.reset()
        r = self.pull("org/name", "--json", cache=cache)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["state"], "done")
        commit = doc["commit"]
        files = self.check_cache(cache, "model/org/name", "main", commit)
        lfs = sum(f["size"] for f in files if f["path"].endswith(".safetensors"))
        self.assertEqual(doc["files_total"], len(files))
        self.assertEqual(doc["export"]["files_written"], len(files))
        self.assertEqual(doc["bytes_done"], doc["bytes_total"])
        # The CDN sent each LFS byte once (pieces fetched once, no retries here).
        self.assertEqual(self.hub.cdn_bytes(), lfs)

        # Again, into another cache: nothing comes from the Hub's file routes.
        self.hub.reset()
        cache2 = self.cache()
        r = self.pull("org/name@v1", cache=cache2)
        self.check_cache(cache2, "model/org/name", "v1", commit)
        self.assertEqual(r.stdout.strip(),
                         os.path.join(cache2, "models--org--name", "snapshots", commit))
        st = self.hub.stats()
        self.assertEqual(st["servers"]["cdn"]["bytes"], 0)
        resolves = [p for p in st["paths"]["hub"] if "/resolve/" in p]
        self.assertEqual(resolves, [])

    def test_include_exclude_local_dir(self):
        out = os.path.join(self.root, "local-inc")
        r = self.pull("org/name", "--include", "*.json", "--exclude", "tokenizer*",
                      "--local-dir", out)
        self.assertEqual(sorted(os.listdir(out)), ["config.json"])
        commit = self.model["commit"]
        want = [f for f in self.repo_files("model/org/name", commit) if f["path"] == "config.json"]
        self.assertEqual(sha256_file(os.path.join(out, "config.json")), want[0]["sha256"])
        self.assertIn(out, r.stdout)

    def test_nothing_matches(self):
        r = self.pull("org/name", "--include", "*.nothing", cache=self.cache(), code=1)
        self.assertIn("no file", r.stderr)

    # --- faults -----------------------------------------------------------------------

    def fault_case(self, name, faults, seed):
        info = self.fresh(name, "weights.safetensors:20M,config.json:small", seed)
        self.hub.faults(faults)
        cache = self.cache()
        t0 = time.monotonic()
        r = self.pull("org/" + name, cache=cache)
        self.check_cache(cache, "model/org/" + name, "main", info["commit"])
        st = self.hub.stats()
        self.assertEqual(st["faults_pending"], [], "fault not triggered")
        return r, time.monotonic() - t0

    def test_fault_429_retry_after(self):
        _, took = self.fault_case("f429", [{"type": "429", "retry_after": 1, "server": "cdn"}],
                                  11)
        self.assertGreaterEqual(took, 1.0)

    def test_fault_5xx(self):
        self.fault_case("f5xx", [{"type": "503", "server": "hub", "path": "/api/*"},
                                 {"type": "500", "server": "cdn"},
                                 {"type": "502", "server": "hub", "path": "*/resolve/*"}], 12)

    def test_fault_stall(self):
        self.fault_case("fstall", [{"type": "stall", "after_bytes": 1 << 20, "seconds": 6,
                                    "server": "cdn"}], 13)

    def test_fault_truncate(self):
        self.fault_case("ftrunc", [{"type": "truncate", "after_bytes": 3 << 20,
                                    "server": "cdn"}], 14)

    def test_fault_corrupt_lfs(self):
        self.fault_case("fcorrupt", [{"type": "corrupt", "offset": 12345, "server": "cdn"}], 15)
        self.assertIn("does not match its sha256", self.node.log_text())

    def test_fault_corrupt_small_file(self):
        self.fault_case("fcorrupt2", [{"type": "corrupt", "offset": 3, "server": "hub",
                                       "path": "*/config.json"}], 16)
        self.assertIn("git blob id", self.node.log_text())

    def test_corrupt_every_time_fails_clearly(self):
        self.fresh("fbad", "w.safetensors:1M", 17)
        self.hub.faults([{"type": "corrupt", "offset": 7, "server": "cdn", "count": 10}])
        r = self.pull("org/fbad", cache=self.cache(), code=1)
        self.assertIn("w.safetensors", r.stderr)
        self.assertIn("wrong bytes", r.stderr)
        self.hub.faults([])

    # --- Hub errors -------------------------------------------------------------------

    def test_errors_are_one_clear_line(self):
        self.fresh("gated", "w.safetensors:1M", 21, "--gated", "manual")
        self.fresh("private", "w.safetensors:1M", 22, "--private")
        cases = [
            ("org/nope", "not found"),
            ("org/name@no-such-branch", "revision"),
            ("org/gated", "gated"),
            ("org/private", "not found"),
        ]
        for repo, words in cases:
            with self.subTest(repo=repo):
                r = self.pull(repo, cache=self.cache(), code=1)
                lines = [l for l in r.stderr.splitlines() if l.strip()]
                self.assertTrue(lines, "no message")
                self.assertIn(words, lines[-1].lower())
                self.assertTrue(lines[-1].startswith("shoal pull:"), lines[-1])

    def test_bad_requests_are_refused(self):
        st, doc = self.node.api("POST", "/v1/pulls", {"repo": "org/name", "bogus": 1})
        self.assertEqual(st, 400)
        self.assertIn("bogus", doc["error"])
        st, doc = self.node.api("POST", "/v1/pulls", {"repo": "../x", "cache_dir": "/tmp"})
        self.assertEqual(st, 400)
        st, doc = self.node.api("POST", "/v1/pulls", {"repo": "org/name", "cache_dir": "rel"})
        self.assertEqual(st, 400)
        st, doc = self.node.api("POST", "/v1/pulls", {"repo": "org/name", "cache_dir": "/tmp",
                                                      "from_peer": "no-port"})
        self.assertEqual(st, 400)
        self.assertIn("from_peer", doc["error"])
        st, doc = self.node.api("GET", "/v1/pulls/99999")
        self.assertEqual(st, 404)
        st, doc = self.node.api("DELETE", "/v1/status")
        self.assertEqual(st, 405)

    def test_metrics(self):
        st, text = self.node.api("GET", "/metrics")
        self.assertEqual(st, 200)
        for name in ("shoal_hub_bytes_total", "shoal_store_chunks", "shoal_pulls_active"):
            self.assertIn("\n" + name + " ", "\n" + text)

    # --- the store through the node ----------------------------------------------------

    def test_ls_rm_gc_import(self):
        info = self.fresh("lsrm", "a.safetensors:2M,config.json:small", 31)
        self.pull("org/lsrm", cache=self.cache())
        r = self.node.shoal("ls", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        snaps = [s for s in doc["snapshots"] if s["repo"] == "org/lsrm"]
        self.assertEqual(len(snaps), 1)
        self.assertEqual(snaps[0]["commit"], info["commit"])
        shas = {f["sha256"] for f in doc["files"]}
        for f in snaps[0]["files"]:
            self.assertTrue(f["complete"])
            self.assertIn(f["sha256"], shas)
        r = self.node.shoal("rm", "org/lsrm")
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(self.node.shoal("ls", "--json").stdout)
        self.assertFalse([s for s in doc["snapshots"] if s["repo"] == "org/lsrm"])
        r = self.node.shoal("rm", "org/lsrm")
        self.assertEqual(r.returncode, 1)
        r = self.node.shoal("gc")
        self.assertEqual(r.returncode, 0, r.stderr)

        src = os.path.join(self.root, "ckpt")
        os.makedirs(os.path.join(src, "sub"))
        with open(os.path.join(src, "sub", "w.bin"), "wb") as f:
            f.write(os.urandom(3 << 20))
        with open(os.path.join(src, "config.json"), "w") as f:
            f.write("{}")
        r = self.node.shoal("import", src, "--repo", "me/ckpt", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["files"], 2)
        self.assertEqual(len(doc["commit"]), 40)

        # The Hub does not know me/ckpt: the pull takes it from the store.
        out = os.path.join(self.root, "ckpt-out")
        self.pull("me/ckpt", "--local-dir", out)
        for rel in ("sub/w.bin", "config.json"):
            self.assertEqual(sha256_file(os.path.join(out, rel)),
                             sha256_file(os.path.join(src, rel)))
        cache = self.cache()
        self.pull("me/ckpt@" + doc["commit"], cache=cache)
        self.assertTrue(os.path.isdir(os.path.join(cache, "models--me--ckpt", "snapshots",
                                                   doc["commit"])))
        # Not in the store and not on the Hub: the Hub's answer, and what the store lacks.
        r = self.pull("me/nothing", cache=self.cache(), code=1)
        self.assertIn("not found", r.stderr)

    def test_hub_down_falls_back_to_the_store(self):
        info = self.fresh("offline", "w.safetensors:1M,config.json:small", 51)
        self.pull("org/offline", cache=self.cache())
        # Every API call fails: the revision resolves through the store's ref.
        self.hub.faults([{"type": "503", "server": "hub", "path": "/api/*", "count": 50}])
        cache = self.cache()
        try:
            self.pull("org/offline", cache=cache)
        finally:
            self.hub.faults([])
        self.check_cache(cache, "model/org/offline", "main", info["commit"])
        self.assertIn("using the store's snapshot", self.node.log_text())

    # --- kill -9 and resume --------------------------------------------------------------

    def test_kill9_resume_fetches_only_missing(self):
        size = 160 << 20
        info = self.fresh("big", "big.safetensors:160M", 41)
        self.hub.reset()
        # Slow the CDN so that the kill lands mid-pull.
        self.hub.faults([{"type": "slow", "rate": 24 << 20, "max_seconds": 60, "server": "cdn",
                          "count": 100}])
        st, doc = self.node.api("POST", "/v1/pulls", {"repo": "org/big",
                                                      "cache_dir": self.cache()})
        self.assertEqual(st, 202, doc)
        pid = doc["id"]

        def progressed():
            s, d = self.node.api("GET", "/v1/pulls/" + pid)
            return d["bytes_done"] >= size // 2 or d["state"] in ("done", "failed")
        nodeenv.wait_until(progressed, "half of the pull", timeout=120, step=0.05)
        self.node.stop(signal.SIGKILL)
        self.hub.faults([])
        fetched_before = self.hub.cdn_bytes()
        self.node.start()
        self.hub.reset()
        cache = self.cache()
        self.pull("org/big", cache=cache)
        self.check_cache(cache, "model/org/big", "main", info["commit"])
        again = self.hub.cdn_bytes()
        # Only what the killed node had not stored comes again: less than the file, and
        # at most what is missing plus the pieces that were in flight (requests and
        # pieces being hashed). A kill loses nothing the store had written.
        self.assertLess(again, size)
        self.assertLessEqual(again, size - fetched_before + (8 * 16 << 20))
        self.assertGreater(fetched_before, 0)

    # --- shoal check ---------------------------------------------------------------------

    def test_check_finds_and_repairs_damage(self):
        """A chunk damaged on disk: `shoal check` finds it (exit 3), --repair drops the
        piece that used it, and the next pull fetches that piece and nothing else."""
        info = self.fresh("damage", "w.safetensors:40M", 51)
        node = Node(self.root, self.hub.url, name="checknode")
        try:
            env = {"HF_HUB_CACHE": self.cache()}
            r = node.shoal("pull", "org/damage", env=env)
            self.assertEqual(r.returncode, 0, r.stderr)
            r = node.shoal("check")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("consistent", r.stdout)

            packs = os.path.join(node.dir, "store", "packs")
            names = sorted(n for n in os.listdir(packs) if n.endswith(".pack"))
            self.assertTrue(names)
            path = os.path.join(packs, names[0])
            with open(path, "r+b") as f:  # one bit, 20 MB in: inside the second region
                f.seek(20 << 20)
                b = f.read(1)
                f.seek(20 << 20)
                f.write(bytes([b[0] ^ 1]))
            r = node.shoal("check", "--json")
            self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
            doc = json.loads(r.stdout)
            self.assertFalse(doc["consistent"])
            self.assertEqual(doc["bad_chunks"], 1)
            self.assertEqual(doc["broken_files"], 1)
            r = node.shoal("check", "--repair")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("1 chunks damaged", r.stdout)
            self.assertEqual(node.shoal("check").returncode, 0)
            r = node.shoal("ls")
            self.assertIn("(partial)", r.stdout)

            self.hub.reset()
            cache = self.cache()
            r = node.shoal("pull", "org/damage", env={"HF_HUB_CACHE": cache})
            self.assertEqual(r.returncode, 0, r.stderr)
            self.check_cache(cache, "model/org/damage", "main", info["commit"])
            # That one piece: 16 MiB, or the file's last 8 MiB (pieces land in the packs
            # in the order they arrive).
            self.assertIn(self.hub.cdn_bytes(), (16 << 20, 8 << 20))
            r = node.shoal("check")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(node.shoal("check", "extra").returncode, 2)
        finally:
            node.stop()


if __name__ == "__main__":
    unittest.main()
