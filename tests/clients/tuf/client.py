#!/usr/bin/env python3
"""python-tuf's ngclient (PyPI `tuf`, pinned in requirements.txt) against a sigvault TUF
repository: what tests/tuf.rs uses to prove that a stock client updates from it and refuses
what it must.

    client.py URL METADATA_DIR [--bootstrap ROOT_JSON] [--target NAME]...

Bootstraps from ROOT_JSON when METADATA_DIR holds no trusted root yet, refreshes the top-level
metadata (following every root rotation), downloads each --target into METADATA_DIR/targets and
prints one JSON object: the trusted version of each role and each target's SHA-256. On a refusal
it prints {"error": <exception class>, "message": ...} and exits 1, so that the test can tell a
refused rollback from a network error.
"""

import argparse
import hashlib
import json
import os
import shutil
import sys

from tuf.api.metadata import Metadata
from tuf.ngclient import Updater


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("metadata_dir")
    ap.add_argument("--bootstrap")
    ap.add_argument("--target", action="append", default=[])
    args = ap.parse_args()
    mdir = args.metadata_dir
    tdir = os.path.join(mdir, "targets")
    os.makedirs(tdir, exist_ok=True)
    trusted = os.path.join(mdir, "root.json")
    if not os.path.exists(trusted):
        if not args.bootstrap:
            print(json.dumps({"error": "NoRoot", "message": "no trusted root and no --bootstrap"}))
            return 2
        shutil.copyfile(args.bootstrap, trusted)
    url = args.url.rstrip("/")
    try:
        updater = Updater(
            metadata_dir=mdir,
            metadata_base_url=url + "/",
            target_dir=tdir,
            target_base_url=url + "/targets/",
            # The trusted root is the file in metadata_dir (copied there from --bootstrap).
            bootstrap=None,
        )
        updater.refresh()
        files = {}
        for name in args.target:
            info = updater.get_targetinfo(name)
            if info is None:
                raise LookupError(f"the targets metadata lists no {name}")
            path = updater.find_cached_target(info) or updater.download_target(info)
            with open(path, "rb") as f:
                files[name] = hashlib.sha256(f.read()).hexdigest()
    except Exception as e:  # the test asserts on the class: report it, whatever it is
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
        return 1
    versions = {}
    for role in ("root", "timestamp", "snapshot", "targets"):
        p = os.path.join(mdir, f"{role}.json")
        if os.path.exists(p):
            versions[role] = Metadata.from_file(p).signed.version
    print(json.dumps({"versions": versions, "files": files}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
