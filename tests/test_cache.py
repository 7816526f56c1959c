import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest

from competition.registry import load_competition
from pipelines.data import load_split_cached

# --- a damaged cache entry is rebuilt; a killed build's temporary folder is removed ------------------------------

def truncate(path):
    path.write_bytes(path.read_bytes()[:-100])


CACHE_DAMAGE = [
    ("truncated images", lambda e: truncate(e / "images.npy"), "images.npy"),
    ("missing images", lambda e: (e / "images.npy").unlink(), "images.npy"),
    ("missing ids", lambda e: (e / "ids.npy").unlink(), "ids.npy"),
    ("missing labels", lambda e: (e / "labels.npy").unlink(), "labels.npy"),
    ("short sources", lambda e: np.save(e / "sources.npy", np.zeros((3, 4), np.int32)), "sources.npy"),
    ("garbage meta", lambda e: (e / "meta.json").write_text("{not json"), "meta.json"),
    ("no meta", lambda e: (e / "meta.json").unlink(), "meta.json"),
    ("padded images", lambda e: (e / "images.npy").open("ab").write(b"\0" * 64), "images.npy"),
]


@pytest.mark.parametrize("case, damage, named", CACHE_DAMAGE, ids=[c[0] for c in CACHE_DAMAGE])
def test_a_damaged_cache_entry_is_noticed_said_and_decoded_again(tiny, home, capsys, case, damage, named):
    comp = load_competition(tiny)
    first = load_split_cached(comp, "train", progress=False)
    expected = np.array(first.images)
    entry = first.cache_dir
    del first
    damage(entry)
    capsys.readouterr()
    again = load_split_cached(comp, "train", progress=False)
    err = capsys.readouterr().err
    assert re.search(rf"cache: {re.escape(str(entry))} is damaged \(.*{named}.*\); decoding again", err), err
    assert again.decoded and again.cache_dir == entry and len(err.strip().splitlines()) == 1
    np.testing.assert_array_equal(again.images, expected)
    assert len(again.ids) == 36 and again.labels.shape == (36,) and again.sources.shape == (36, 4)
    assert not load_split_cached(comp, "train", progress=False).decoded  # sound again


def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_build_removes_temporaries_of_dead_builders_of_its_split_and_leaves_live_ones(tiny, home):

    root = home / "data" / "cache" / "tiny"
    host = socket.gethostname()
    dead = root / f".train-0123456789abcdef0123.pid{dead_pid()}@{host}.x1y2z3"
    alive = root / f".train-0123456789abcdef0123.pid{os.getpid()}@{host}.a1b2c3"
    other_host = root / f".train-0123456789abcdef0123.pid{dead_pid()}@not-{host}.q1w2e3"
    other_split = root / f".val-0123456789abcdef0123.pid{dead_pid()}@{host}.k1k2k3"
    for folder in (dead, alive, other_host, other_split):
        folder.mkdir(parents=True)
        (folder / "images.npy").write_bytes(b"\0" * 1000)
    assert load_split_cached(load_competition(tiny), "train", progress=False).decoded
    assert not dead.exists() and alive.exists() and other_host.exists() and other_split.exists()
    assert sorted(p.name for p in root.glob(".train-*")) == sorted([alive.name, other_host.name])  # its own: renamed
