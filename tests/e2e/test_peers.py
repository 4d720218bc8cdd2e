"""test_peers.py - two nodes of one cluster: a pull --from-peer, and peers that are not.

Node A pulls a model from the test hub; node B, holding the same cluster key, pulls it
from A with --from-peer and must take nothing from the Hub. A node with another key is
refused by the handshake; bytes that are not a handshake, or silence, get the
connection closed with a log line, and A goes on serving.
"""
import json
import os
import socket
import subprocess
import time
import unittest

import nodeenv
from nodeenv import Hub, Node
from test_pull import sha256_file


class PeersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.root = nodeenv.tmpdir()
        hubroot = os.path.join(cls.root, "hub")
        os.makedirs(hubroot)
        cls.hub = Hub(hubroot)
        cls.model = cls.hub.make("model/org/m", "w-1.safetensors:40M,w-2.safetensors:7M,"
                                 "config.json:small", "--seed", "5", "--tag", "v1")
        cls.key = os.path.join(cls.root, "cluster.key")
        subprocess.run([nodeenv.SHOAL, "keygen", cls.key], check=True, capture_output=True)
        extra = ("--cluster-key", cls.key, "--hub-timeout", "2")
        cls.a = Node(cls.root, cls.hub.url, "a", extra=extra + ("--log-level", "debug"))
        cls.b = Node(cls.root, cls.hub.url, "b", extra=extra)

    @classmethod
    def tearDownClass(cls):
        for n in (cls.a, cls.b):
            n.stop()
        cls.hub.stop()
        if not os.environ.get("SHOAL_KEEP_TMP"):
            nodeenv.rmtree(cls.root)

    def pull(self, node, *args, code=0, cache=None):
        env = {"HF_HUB_CACHE": cache} if cache else {}
        r = node.shoal("pull", *args, env=env)
        self.assertEqual(r.returncode, code, r.stderr[-3000:])
        return r

    def test_a_pull_from_peer_takes_nothing_from_the_hub(self):
        commit = self.model["commit"]
        self.pull(self.a, "org/m", cache=os.path.join(self.root, "cache-a"))
        self.hub.reset()
        cache = os.path.join(self.root, "cache-b")
        r = self.pull(self.b, "org/m@" + commit, "--from-peer", self.a.peer_addr(), "--json",
                      cache=cache)
        doc = json.loads(r.stdout)
        self.assertEqual(doc["state"], "done")
        st = self.hub.stats()
        self.assertEqual(st["servers"]["hub"]["requests"], 0)
        self.assertEqual(st["servers"]["cdn"]["requests"], 0)
        snap = os.path.join(cache, "models--org--m", "snapshots", commit)
        for rel, f in self.model["files"].items():
            self.assertEqual(sha256_file(os.path.join(snap, rel)), f["sha256"], rel)
        # A branch name resolves through the refs of the peer (it pulled main).
        out = os.path.join(self.root, "local-b")
        self.pull(self.b, "org/m@main", "--from-peer", self.a.peer_addr(), "--local-dir", out)
        self.assertEqual(sha256_file(os.path.join(out, "w-2.safetensors")),
                         self.model["files"]["w-2.safetensors"]["sha256"])
        st, peers = self.b.api("GET", "/v1/peers")
        self.assertEqual(st, 200)
        self.assertTrue(peers["peers"][0]["self"])
        for p in peers["peers"][1:]:
            self.assertIn(p["cipher"], ("aes-256-gcm", "chacha20-poly1305"))
        r = self.b.shoal("peers")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("self", r.stdout)
        r = self.b.shoal("peers", "--json")
        self.assertEqual(json.loads(r.stdout)["peers"][0]["node_id"],
                         peers["peers"][0]["node_id"])
        st, text = self.a.api("GET", "/metrics")
        self.assertIn("shoal_peer_chunk_bytes_served_total", text)
        # Per connection: B's connection to A, as A sees it, has sent the model.
        sent = [l for l in text.splitlines()
                if l.startswith("shoal_peer_connection_bytes_out{") and 'direction="in"' in l]
        self.assertTrue(sent, text)
        self.assertGreater(max(int(l.rsplit(" ", 1)[1]) for l in sent), 40 << 20)

    def test_b_unknown_snapshot_is_a_clear_error(self):
        r = self.pull(self.b, "org/nothing@" + "0" * 40, "--from-peer", self.a.peer_addr(),
                      code=1, cache=os.path.join(self.root, "cache-x"))
        self.assertIn("does not hold", r.stderr)

    def test_c_other_cluster_key_is_refused(self):
        key2 = os.path.join(self.root, "other.key")
        subprocess.run([nodeenv.SHOAL, "keygen", key2], check=True, capture_output=True)
        c = Node(self.root, self.hub.url, "c", extra=("--cluster-key", key2))
        try:
            r = self.pull(c, "org/m@" + self.model["commit"], "--from-peer",
                          self.a.peer_addr(), code=1, cache=os.path.join(self.root, "cache-c"))
            self.assertIn("peer", r.stderr)
        finally:
            c.stop()
        nodeenv.wait_until(lambda: "handshake failed" in self.a.log_text(),
                           "A to log the failed handshake", timeout=20)

    def test_d_garbage_and_silence_close_only_that_connection(self):
        host, port = self.a.peer_addr().rsplit(":", 1)
        # A frame length of 0 is not a frame.
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(b"\x00\x00garbage")
        self.assertEqual(s.recv(100), b"")  # closed by A
        s.close()
        nodeenv.wait_until(lambda: "bad frame" in self.a.log_text() or
                           "handshake failed" in self.a.log_text(), "A to log it", timeout=20)
        # A served commit still works meanwhile.
        st, doc = self.a.api("GET", "/v1/status")
        self.assertEqual(st, 200)
        # The faults of that host outlive its connections: the wrong key of test c and
        # this garbage, each counted for 127.0.0.1 with what happened last.
        def faults():
            s, d = self.a.api("GET", "/v1/peers")
            return [f for f in d["faults"] if f["host"] == "127.0.0.1"]
        nodeenv.wait_until(lambda: faults() and faults()[0]["handshake"] >= 2,
                           "A to count both handshake faults", timeout=20)
        f = faults()[0]
        self.assertIn("handshake", f["last"])
        r = self.a.shoal("peers")
        self.assertIn("faults by host:", r.stdout)
        self.assertRegex(r.stdout, r"127\.0\.0\.1 +handshake [2-9]")
        self.assertEqual(f["bad_data"], 0)
        st, text = self.a.api("GET", "/metrics")
        line = [l for l in text.splitlines() if l.startswith(
            'shoal_peer_host_faults_total{host="127.0.0.1",kind="handshake"}')]
        self.assertEqual(len(line), 1, text)
        self.assertGreaterEqual(int(line[0].rsplit(" ", 1)[1]), 2)

    def test_e_a_dead_peer_is_retried_with_backoff(self):
        # Nothing listens on port 1: the first pull fails at once, the second waits its
        # turn before dialling again, and both say which peer failed.
        for _ in range(2):
            r = self.pull(self.b, "org/m@" + self.model["commit"], "--from-peer",
                          "127.0.0.1:1", code=1, cache=os.path.join(self.root, "cache-e"))
            self.assertIn("127.0.0.1:1", r.stderr)
        self.assertIn("peer 127.0.0.1:1: connecting again in", self.b.log_text())
        st, doc = self.b.api("GET", "/v1/peers")
        self.assertEqual(st, 200)
        for p in doc["peers"]:
            if not p.get("self"):
                self.assertIn("rate_in", p)

    def test_f_a_damaged_chunk_is_never_served(self):
        # A imports a file, then one byte of it rots in A's pack. A must not send those
        # bytes (B would blame it): it sends the chunk as missing, says so in its log,
        # and B's pull fails with nothing of it exported. A's check finds the damage.
        src = os.path.join(self.root, "dmg")
        os.makedirs(src)
        data = os.urandom(20 << 20)
        with open(os.path.join(src, "w.bin"), "wb") as f:
            f.write(data)
        r = self.a.shoal("import", src, "--repo", "org/dmg", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        commit = json.loads(r.stdout)["commit"]
        packs = os.path.join(self.a.dir, "store", "packs")
        probe = data[5 << 20:(5 << 20) + 64]
        hit = None
        for name in sorted(os.listdir(packs)):
            with open(os.path.join(packs, name), "rb") as f:
                at = f.read().find(probe)
            if at >= 0:
                hit = (os.path.join(packs, name), at)
        self.assertIsNotNone(hit)
        with open(hit[0], "r+b") as f:
            f.seek(hit[1])
            b = f.read(1)
            f.seek(hit[1])
            f.write(bytes([b[0] ^ 0x80]))
        cache = os.path.join(self.root, "cache-f")
        self.pull(self.b, "org/dmg@" + commit, "--from-peer", self.a.peer_addr(), code=1,
                  cache=cache)
        self.assertIn("did not match their hash and were not served", self.a.log_text())
        self.assertFalse(os.path.exists(os.path.join(cache, "models--org--dmg", "snapshots")))
        self.assertEqual(self.a.shoal("check").returncode, 3)
        self.assertEqual(self.a.shoal("check", "--repair").returncode, 0)

if __name__ == "__main__":
    unittest.main()
