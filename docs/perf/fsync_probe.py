"""fsync of one write of a given size, appended or rewriting, on a directory's disk.

    python3 docs/perf/fsync_probe.py DIR

For sizes of 200 bytes, 16 KiB, 56 KiB (a cache hit's WAL frames) and 96
KiB, prints the p50 of 300 fsyncs after appending that many bytes to a file
(the file grows, as a new WAL does) and after rewriting bytes already in the
file (as a WAL that has started again from its beginning does).
"""

import os
import statistics
import sys
import time


def probe(directory: str, size: int, rewrite: bool, count: int = 300) -> float:
    path = os.path.join(directory, "fsync-probe.dat")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if rewrite:
            os.write(fd, b"\0" * (size * count + 4096))
            os.fsync(fd)
        data = b"x" * size
        times = []
        for i in range(count):
            started = time.perf_counter()
            os.pwrite(fd, data, i * size)
            os.fsync(fd)
            times.append((time.perf_counter() - started) * 1e6)
        return statistics.median(times)
    finally:
        os.close(fd)
        os.unlink(path)


def main() -> None:
    directory = sys.argv[1]
    for size in (200, 16 * 1024, 56 * 1024, 96 * 1024):
        appended = probe(directory, size, rewrite=False)
        rewritten = probe(directory, size, rewrite=True)
        print(f"{size:>6} bytes: append+fsync p50 {appended:.0f} us, rewrite+fsync p50 {rewritten:.0f} us")


if __name__ == "__main__":
    main()
