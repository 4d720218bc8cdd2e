#!/usr/bin/env python3
"""make_model.py - writes a deterministic test repo into the test hub's root layout.

Usage:
    python3 -B make_model.py --root DIR --repo model/org/name
        [--files "model.safetensors:200M,config.json:small,sub/x.bin:1M:lfs,notes.txt:2K:git"]
        [--seed N] [--revision main] [--tag v1 ...] [--delete PATH ...]
        [--parent REV | --fresh] [--message MSG]
        [--gated false|auto|manual] [--private | --public] [--disabled | --enabled]
        [--token TOK ...] [--user-token TOK ...] [--lfs-threshold 10M] [--no-gitattributes]

The layout is documented in hub.py. Each run adds at most one commit to the branch given by
--revision (a name, or refs/pr/N): its files are the parent commit's files (the branch
head; for a new branch the default branch head; none with --fresh) minus --delete plus
--files. Files taken over from the parent are hard links (copies where links fail). Without
--files/--delete on an existing repo no commit is made; flags, tokens and tags are still
applied (tags point at the branch head).

--files: comma-separated PATH:SIZE[:lfs|:git]. SIZE is "small" or bytes with an optional
K/M/G suffix (powers of 1024). Content is a pure function of (seed, path, size):
  *.safetensors  8-byte little-endian header length, JSON header (one U8 tensor), random data
  *.json         a config-like JSON object, padded to SIZE
  *.txt *.md *.py text lines
  anything else  random bytes
Files are LFS when marked ":lfs", or not marked ":git" and their extension is a usual LFS one
(.safetensors, .bin, .gguf, .parquet, ...) or their size is >= --lfs-threshold. The commit id
is the git commit hash of the tree (git blob/tree hashing, LFS files as pointers) with a fixed
author and a date derived from the commit's depth, so the same inputs give the same id.

--token grants a token access to this repo (private/gated); --user-token registers a
known user token without any grant (DIR/tokens.json). Prints one JSON line describing
the commit and its files (size, lfs, sha256, etag).
"""
import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hub  # noqa: E402  (git hashing and the layout are shared with the server)

BASE_TS = 1704067200  # 2024-01-01T00:00:00Z; commit n is dated n hours later
GEN_BLOCK = 1 << 22
LFS_EXT = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5", ".msgpack",
           ".parquet", ".arrow", ".npy", ".npz", ".pkl", ".tflite", ".ot", ".model", ".zip",
           ".gz", ".tar")
DEFAULT_FILES = "config.json:small,generation_config.json:small,tokenizer.json:64K,model.safetensors:16M"
WORDS = ("shoal hub test model weights tensor layer token config revision commit branch "
         "download cache node peer chunk piece range header etag").split()
TYPES = {"model": "model", "models": "model", "dataset": "dataset", "datasets": "dataset",
         "space": "space", "spaces": "space"}


def die(msg):
    print("make_model: " + msg, file=sys.stderr)
    sys.exit(2)


def parse_size(s):
    s = s.strip()
    if s.lower() == "small":
        return None
    mult = 1
    if s and s[-1].upper() in "KMG":
        mult = 1024 ** ("KMG".index(s[-1].upper()) + 1)
        s = s[:-1]
    try:
        n = int(s) * mult
    except ValueError:
        die("bad size %r" % s)
    if n < 0:
        die("negative size")
    return n


def check_path(p):
    parts = p.split("/")
    if not p or any(x in ("", ".", "..") for x in parts) or "\\" in p or "\0" in p:
        die("bad file path %r" % p)
    return p


def parse_files(spec):
    out = []
    for item in filter(None, (x.strip() for x in (spec or "").split(","))):
        bits = item.split(":")
        if len(bits) < 2 or len(bits) > 3 or (len(bits) == 3 and bits[2] not in ("lfs", "git")):
            die("bad --files item %r (want PATH:SIZE[:lfs|:git])" % item)
        out.append((check_path(bits[0]), parse_size(bits[1]),
                    None if len(bits) == 2 else bits[2] == "lfs"))
    return out


# ---------------------------------------------------------------- content generators

def gen_random(rng, size):
    left = size
    for _ in range(size // GEN_BLOCK + 1):
        n = min(GEN_BLOCK, left)
        if n <= 0:
            return
        left -= n
        yield rng.randbytes(n)


def gen_safetensors(rng, size):
    if size is None:
        size = 1024

    def header(d):
        return json.dumps({"__metadata__": {"format": "pt", "generator": "shoal-make-model"},
                           "weight": {"dtype": "U8", "shape": [d], "data_offsets": [0, d]}},
                          separators=(",", ":")).encode()
    hlen = len(header(size))  # an upper bound: the real data length is smaller than size
    d = size - 8 - hlen
    if d < 0:
        die("safetensors file of %d bytes is too small (min %d)" % (size, 8 + hlen))
    h = header(d)
    h += b" " * (hlen - len(h))  # the format allows trailing spaces in the header
    yield len(h).to_bytes(8, "little") + h
    yield from gen_random(rng, d)


def gen_json(rng, size, path, seed):
    obj = {"architectures": ["ShoalTestModel"], "model_type": "shoal-test",
           "hidden_size": rng.choice([64, 128, 256, 512]), "num_hidden_layers": rng.randint(1, 12),
           "vocab_size": rng.randint(1000, 50000), "torch_dtype": "float32",
           "shoal_seed": seed, "shoal_path": path}
    if size is None:
        yield (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()
        return
    obj["_pad"] = ""
    base = len(json.dumps(obj, sort_keys=True).encode())
    if size < base:
        die("%s: %d bytes is too small for the JSON skeleton (min %d)" % (path, size, base))
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    obj["_pad"] = "".join(rng.choice(letters) for _ in range(size - base))
    yield json.dumps(obj, sort_keys=True).encode()


def gen_text(rng, size, path, seed):
    head = "# %s\n\nShoal test file (seed %d).\n\n" % (path, seed)
    target = 300 if size is None else size
    out = [head]
    n = len(head)
    for _ in range(target + 1):
        if n >= target:
            break
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "\n"
        out.append(line)
        n += len(line)
    data = "".join(out).encode()
    yield data[:target] if size is not None else data


def generate(path, size, seed):
    rng = random.Random("shoal-make-model:%d:%s" % (seed, path))
    low = path.lower()
    if low.endswith(".safetensors"):
        return gen_safetensors(rng, size)
    if low.endswith(".json"):
        return gen_json(rng, size, path, seed)
    if low.endswith((".txt", ".md", ".py", ".yaml", ".yml", ".cfg")):
        return gen_text(rng, size, path, seed)
    return gen_random(rng, 256 if size is None else size)


def write_blocks(dst, blocks):
    h = hashlib.sha256()
    n = 0
    with open(dst, "wb") as f:
        for b in blocks:
            f.write(b)
            h.update(b)
            n += len(b)
    return n, h.hexdigest()


# ---------------------------------------------------------------- repo handling

def load_json(path, default):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def save_json(path, obj):
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def resolve(meta, rev):
    for key, prefix in (("tags", "refs/tags/"), ("branches", "refs/heads/"), ("pull_requests", "refs/pr/")):
        refs = meta.get(key, {})
        if rev.startswith(prefix) and rev[len(prefix):] in refs:
            return refs[rev[len(prefix):]]
        if key != "pull_requests" and rev in refs:
            return refs[rev]
    if rev in meta.get("commits", {}):
        return rev
    return None


def depth_of(meta, commit):
    n = 0
    for _ in range(len(meta.get("commits", {})) + 1):
        if not commit:
            break
        n += 1
        parents = meta["commits"].get(commit, {}).get("parents") or []
        commit = parents[0] if parents else None
    return n


def link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write a deterministic test repo for hub.py")
    ap.add_argument("--root", required=True)
    ap.add_argument("--repo", required=True, help="TYPE/ORG/NAME, e.g. model/org/name")
    ap.add_argument("--files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--revision", default="main")
    ap.add_argument("--tag", action="append", default=[])
    ap.add_argument("--delete", action="append", default=[])
    ap.add_argument("--parent")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--message")
    ap.add_argument("--gated", choices=["false", "auto", "manual"])
    ap.add_argument("--private", dest="private", action="store_const", const=True)
    ap.add_argument("--public", dest="private", action="store_const", const=False)
    ap.add_argument("--disabled", dest="disabled", action="store_const", const=True)
    ap.add_argument("--enabled", dest="disabled", action="store_const", const=False)
    ap.add_argument("--token", action="append", default=[])
    ap.add_argument("--user-token", action="append", default=[])
    ap.add_argument("--lfs-threshold", default="10M")
    ap.add_argument("--no-gitattributes", action="store_true")
    a = ap.parse_args(argv)

    parts = a.repo.split("/")
    if len(parts) != 3 or parts[0] not in TYPES or not all(hub.NAME_RE.match(p) for p in parts[1:]):
        die("--repo must be TYPE/ORG/NAME with TYPE model, dataset or space")
    rtype, org, name = TYPES[parts[0]], parts[1], parts[2]
    if a.revision.startswith("refs/") and not a.revision.startswith("refs/pr/"):
        die("--revision must be a branch name or refs/pr/N")
    threshold = parse_size(a.lfs_threshold) or 0
    repo_dir = os.path.join(a.root, rtype + "s", org, name)
    os.makedirs(os.path.join(repo_dir, "commits"), exist_ok=True)
    meta_path = os.path.join(repo_dir, "repo.json")
    meta = load_json(meta_path, None)
    if meta is None:
        meta = {"default_branch": "main", "branches": {}, "tags": {}, "pull_requests": {},
                "commits": {}, "private": False, "gated": False, "disabled": False,
                "tokens": [], "created_at": hub.iso_date(BASE_TS)}
    for k in ("branches", "tags", "pull_requests", "commits"):
        meta.setdefault(k, {})

    is_pr = a.revision.startswith("refs/pr/")
    ref_table = meta["pull_requests"] if is_pr else meta["branches"]
    ref_name = a.revision[len("refs/pr/"):] if is_pr else a.revision
    if a.fresh:
        parent = None
    elif a.parent:
        parent = resolve(meta, a.parent)
        if parent is None:
            die("unknown --parent %r" % a.parent)
    else:
        parent = ref_table.get(ref_name) or meta["branches"].get(meta.get("default_branch", "main"))

    files = parse_files(a.files if a.files is not None else (DEFAULT_FILES if not parent else ""))
    head = ref_table.get(ref_name)
    if files or a.delete or not parent or a.fresh or a.parent:
        head = make_commit(a, meta, repo_dir, parent, files, threshold)
        ref_table[ref_name] = head

    for t in a.tag:
        if not t or t.startswith(("refs/", "/")):
            die("bad tag %r" % t)
        meta["tags"][t] = head
    if a.gated is not None:
        meta["gated"] = False if a.gated == "false" else a.gated
    if a.private is not None:
        meta["private"] = a.private
    if a.disabled is not None:
        meta["disabled"] = a.disabled
    if a.token:
        meta["tokens"] = sorted(set(meta.get("tokens", [])) | set(a.token))
    save_json(meta_path, meta)
    if a.user_token:
        tpath = os.path.join(a.root, "tokens.json")
        save_json(tpath, sorted(set(load_json(tpath, [])) | set(a.user_token)))

    cmeta = meta["commits"][head]
    cdir = os.path.join(repo_dir, "commits", head)
    idx = hub.CommitIndex(cdir, cmeta.get("lfs", {}))
    out = {}
    for p in sorted(idx.files):
        ap_, size = idx.files[p]
        if idx.is_lfs(p):
            sha = idx.lfs_sha256(p)
            out[p] = {"size": size, "lfs": True, "sha256": sha, "etag": sha}
        else:
            sha1, sha = hub.hash_file(ap_, sha1=True, sha256=True)
            out[p] = {"size": size, "lfs": False, "sha256": sha, "etag": sha1}
    print(json.dumps({"repo": "%s/%s/%s" % (rtype, org, name), "id": org + "/" + name,
                      "type": rtype, "revision": a.revision, "commit": head,
                      "parents": cmeta.get("parents", []), "tree": cmeta.get("tree"),
                      "tags": sorted(t for t, c in meta["tags"].items() if c == head),
                      "files": out}, sort_keys=True))
    return 0


def make_commit(a, meta, repo_dir, parent, files, threshold):
    commits_dir = os.path.join(repo_dir, "commits")
    staging = os.path.join(commits_dir, ".staging-%d" % os.getpid())
    if os.path.exists(staging):
        shutil.rmtree(staging)
    os.makedirs(staging)
    lfs = {}
    try:
        if parent:
            pdir = os.path.join(commits_dir, parent)
            pidx = hub.CommitIndex(pdir, meta["commits"][parent].get("lfs", {}))
            for p, (src, size) in pidx.files.items():
                if p in a.delete:
                    continue
                dst = os.path.join(staging, *p.split("/"))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                link_or_copy(src, dst)
                if pidx.is_lfs(p):
                    lfs[p] = {"sha256": pidx.lfs_sha256(p), "size": size}
        for p, size, want_lfs in files:
            dst = os.path.join(staging, *p.split("/"))
            if os.path.isdir(dst):
                die("%s is a directory in the parent commit" % p)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if os.path.exists(dst):
                os.unlink(dst)  # never write through a hard link into the parent commit
            n, sha = write_blocks(dst, generate(p, size, a.seed))
            if want_lfs is None:
                want_lfs = p.lower().endswith(LFS_EXT) or (threshold > 0 and n >= threshold)
            lfs.pop(p, None)
            if want_lfs:
                lfs[p] = {"sha256": sha, "size": n}
        if not a.no_gitattributes:
            ga = os.path.join(staging, ".gitattributes")
            if os.path.exists(ga):
                os.unlink(ga)
            lfs.pop(".gitattributes", None)
            text = "".join("%s filter=lfs diff=lfs merge=lfs -text\n" % p.replace(" ", "[[:space:]]")
                           for p in sorted(lfs))
            with open(ga, "w", encoding="utf-8") as f:
                f.write(text)
        tree = hub.CommitIndex(staging, lfs).tree_oid("")
        depth = depth_of(meta, parent) + 1
        ts = BASE_TS + 3600 * depth
        message = a.message or "Shoal test commit %d" % depth
        parents = [parent] if parent else []
        commit = hub.git_commit_sha1(tree, parents, ts, message)
        final = os.path.join(commits_dir, commit)
        if os.path.isdir(final):
            shutil.rmtree(staging)
        else:
            os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    meta["commits"][commit] = {"title": message, "date": hub.iso_date(ts), "parents": parents,
                               "tree": tree, "lfs": lfs}
    return commit


if __name__ == "__main__":
    sys.exit(main())
