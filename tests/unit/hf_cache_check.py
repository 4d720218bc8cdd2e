#!/usr/bin/env python3
"""hf_cache_check.py - checks a Hugging Face hub-cache tree written by export_hf_cache.

Usage: hf_cache_check.py CACHE REPO REVISION MANIFEST_JSON

REPO is Shoal's "type/org/name"; MANIFEST_JSON a list of {"path", "size", "sha256"
[, "etag"]}. The checks follow what huggingface_hub documents for its cache and does
in offline mode (HF_HUB_OFFLINE=1): the revision is resolved through refs/<revision>
(a file holding the commit, no newline) unless it is a commit already, and a file is
found when snapshots/<commit>/<path> exists. Like `hf cache scan`, a broken symlink
anywhere in the repo folder is an error. Standard library only, so the test runs
where huggingface_hub is not installed; when it is, its own lookup is tried as well.
Exit status 0 when everything holds, 1 with a message otherwise.
"""
import hashlib
import json
import os
import re
import sys

HEX40 = re.compile(r"[0-9a-f]{40}")
ETAG = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def fail(msg):
    print(f"hf_cache_check: {msg}", file=sys.stderr)
    sys.exit(1)


def repo_folder(repo):
    kind, _, name = repo.partition("/")
    if kind not in ("model", "dataset", "space") or not name:
        fail(f"bad repo {repo!r}")
    return f"{kind}s--" + name.replace("/", "--")


def resolve_commit(root, revision):
    ref = os.path.join(root, "refs", *revision.split("/"))
    if os.path.isfile(ref):
        with open(ref, "rb") as f:
            raw = f.read()
        if not HEX40.fullmatch(raw.decode("ascii", "replace")):
            fail(f"refs/{revision} holds {raw!r}, not a bare 40-hex commit (no newline)")
        return raw.decode("ascii")
    if HEX40.fullmatch(revision):
        return revision
    fail(f"refs/{revision} is missing")
    return None


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file(root, blobs_real, snapdir, entry):
    path = entry["path"]
    link = os.path.join(snapdir, *path.split("/"))
    if not os.path.exists(link):
        fail(f"{path}: snapshots/.../{path} does not resolve (offline lookup would miss it)")
    # The directories between the snapshot and the link are real directories.
    d = snapdir
    for part in path.split("/")[:-1]:
        d = os.path.join(d, part)
        if os.path.islink(d) or not os.path.isdir(d):
            fail(f"{path}: {os.path.relpath(d, snapdir)} is not a plain directory")
    if not os.path.islink(link):
        fail(f"{path}: not a symlink")
    target = os.readlink(link)
    if os.path.isabs(target):
        fail(f"{path}: absolute symlink {target!r}")
    want = os.path.relpath(os.path.join(root, "blobs"), os.path.dirname(link))
    if os.path.dirname(target) != want:
        fail(f"{path}: symlink {target!r} does not go to {want}/<etag>")
    real = os.path.realpath(link)
    if os.path.dirname(real) != blobs_real:
        fail(f"{path}: resolves to {real}, outside blobs/")
    name = os.path.basename(real)
    if not ETAG.fullmatch(name):
        fail(f"{path}: blob name {name!r} is not an etag")
    if "etag" in entry and name != entry["etag"]:
        fail(f"{path}: blob {name} is not the etag {entry['etag']}")
    size = os.path.getsize(real)
    if size != entry["size"]:
        fail(f"{path}: {size} bytes, want {entry['size']}")
    if sha256_of(real) != entry["sha256"]:
        fail(f"{path}: sha256 differs")


def check_tree(root, blobs):
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            if name.endswith(".incomplete"):
                fail(f"leftover temporary file {os.path.relpath(p, root)}")
            if os.path.islink(p) and not os.path.exists(p):
                fail(f"broken symlink {os.path.relpath(p, root)}")
    for name in os.listdir(blobs):
        p = os.path.join(blobs, name)
        if not ETAG.fullmatch(name) or os.path.islink(p) or not os.path.isfile(p):
            fail(f"blobs/{name}: not a blob named by its etag")


def check_with_hub(cache, repo, revision, manifest):
    """The real lookup, when huggingface_hub happens to be installed."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return
    kind, _, repo_id = repo.partition("/")
    for entry in manifest:
        got = try_to_load_from_cache(repo_id, entry["path"], cache_dir=cache,
                                     revision=revision, repo_type=kind)
        if not isinstance(got, str) or not os.path.exists(got):
            fail(f"{entry['path']}: huggingface_hub does not find it ({got!r})")


def main():
    if len(sys.argv) != 5:
        fail("usage: hf_cache_check.py CACHE REPO REVISION MANIFEST_JSON")
    cache, repo, revision, manifest_path = sys.argv[1:]
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    root = os.path.join(cache, repo_folder(repo))
    blobs = os.path.join(root, "blobs")
    for sub in ("blobs", "snapshots"):
        p = os.path.join(root, sub)
        if os.path.islink(p) or not os.path.isdir(p):
            fail(f"{sub}/ is not a plain directory")
    commit = resolve_commit(root, revision)
    snapdir = os.path.join(root, "snapshots", commit)
    if os.path.islink(snapdir) or not os.path.isdir(snapdir):
        fail(f"snapshots/{commit} is missing")
    blobs_real = os.path.realpath(blobs)
    for entry in manifest:
        check_file(root, blobs_real, snapdir, entry)
    check_tree(root, blobs)
    check_with_hub(cache, repo, revision, manifest)
    print(f"hf_cache_check: {len(manifest)} files ok at {revision} ({commit})")


if __name__ == "__main__":
    main()
