#!/usr/bin/env python3
"""browse-tree.py DIR - the tree of the browsing benchmarks (browse-mount.sh, serve.sh):
small/ (20 000 files of 1-8 KiB in 200 directories), tree/ (1 000 directories of 20 small
files) and big.bin (300 MiB of this machine's programs and libraries). Seeded: the same
tree on every run."""
import os
import random
import sys


def small_files(root):
    rng = random.Random(7)
    words = ("backup disk sector image chunk restore file data volume mount read "
             "write table entry stream block cache index").split()
    def text(n):
        out = []
        while sum(map(len, out)) < n:
            out.append(rng.choice(words))
        return (" ".join(out)[:n] + "\n").encode()
    for d in range(200):
        p = os.path.join(root, "small", "d%03d" % d)
        os.makedirs(p)
        for f in range(100):
            open(os.path.join(p, "f%03d.txt" % f), "wb").write(text(rng.randint(1024, 8192)))
    for d in range(1000):
        p = os.path.join(root, "tree", "t%04d" % d)
        os.makedirs(p)
        for f in range(20):
            open(os.path.join(p, "e%02d" % f), "wb").write(text(rng.randint(0, 600)))


def big_file(path):
    # Real programs and libraries: data that compresses as a disk's does.
    want, out = 300 << 20, open(path, "wb")
    for top in ("/usr/lib", "/usr/bin"):
        for d, dirs, files in sorted(os.walk(top)):
            dirs.sort()
            for f in sorted(files):
                p = os.path.join(d, f)
                if out.tell() >= want or os.path.islink(p) or not os.path.isfile(p) or os.path.getsize(p) < 65536:
                    continue
                out.write(open(p, "rb").read()[: want - out.tell()])
    if out.tell() != want:
        sys.exit("not enough data in /usr for big.bin")


small_files(sys.argv[1])
big_file(os.path.join(sys.argv[1], "big.bin"))
