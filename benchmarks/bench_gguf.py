"""Opening GGUF files: zigllama against the gguf package (llama.cpp's Python reader).

1. Open (header + metadata + tensor infos) of a file with a 262,144-entry string
   vocabulary (tokenizer.ggml.tokens), float scores, int token types and 250
   tensors: zigllama.GGUFReader and gguf.GGUFReader in the same run, medians, and
   the ratio. The target: zigllama at most 25 ms and at least 500x faster.
2. Open of a 1 GiB file: the share of it resident afterwards (mincore of the map,
   after dropping the file from the page cache) and the growth of the process's
   resident set. The target: under 1%. The kernel reads `read_ahead_kb` around the
   first page fault (8 MiB on some virtual disks), which bounds what "cold" can mean.

    python benchmarks/bench_gguf.py                 # gguf.GGUFReader 3 times (~26 s each)
    python benchmarks/bench_gguf.py --gguf-repeat 1 --repeat 101
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

import zigllama as zl

N_VOCAB = 262144
N_TENSORS = 250


def make_vocab_file(path):
    rng = np.random.default_rng(0)
    with zl.GGUFWriter(path) as w:
        w.add("general.architecture", "gemma3")
        w.add("gemma3.context_length", 131072, zl.GGUFValueType.UINT32)
        w.add("tokenizer.ggml.model", "llama")
        # token-like strings of 1..16 bytes, some multi-byte UTF-8
        pieces = ["▁", "the", "ing", "é", "中", "<0x0A>", "s", "tion", "er", "ly"]
        tokens = [f"{pieces[i % 10]}{i}{pieces[(i * 7) % 10]}" for i in range(N_VOCAB)]
        w.add_array("tokenizer.ggml.tokens", tokens)
        w.add_array("tokenizer.ggml.scores", rng.standard_normal(N_VOCAB).astype(np.float32))
        w.add_array("tokenizer.ggml.token_type", np.ones(N_VOCAB, dtype=np.int32))
        for i in range(N_TENSORS):
            w.add_tensor(f"blk.{i // 10}.t{i % 10}.weight", np.zeros((4, 64), np.float32))


def median_ms(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def open_zigllama(path):
    r = zl.GGUFReader(path)
    assert len(r.metadata) == 6 and len(r.tensors) == N_TENSORS
    assert len(r.metadata["tokenizer.ggml.tokens"]) == N_VOCAB
    r.close()


def open_zigllama_all_tokens(path):
    with zl.GGUFReader(path) as r:
        toks = list(r.metadata["tokenizer.ggml.tokens"])
        assert len(toks) == N_VOCAB


def open_gguf(path):
    import gguf

    r = gguf.GGUFReader(path)
    assert len(r.tensors) == N_TENSORS and len(r.fields["tokenizer.ggml.tokens"].data) == N_VOCAB


def rss_file_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) * 1024
    return 0


def bench_big_file(tmpdir):
    path = os.path.join(tmpdir, "big.gguf")
    side = 16384  # 16384 x 16384 float32 = 1 GiB
    w = zl.GGUFWriter(path)
    w.add("general.architecture", "llama")
    w.add_tensor_info("big.weight", (side, side), zl.GGMLType.F32)
    w.add_tensor_info("small.weight", (4, 64), zl.GGMLType.F32)
    w.write_header()
    chunk = bytes(64 << 20)
    w.write_tensor_bytes("big.weight", (chunk for _ in range(side * side * 4 // len(chunk))))
    w.write_tensor("small.weight", np.ones((4, 64), np.float32))
    w.close()
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # start cold, as after a reboot
    os.close(fd)
    rss0 = rss_file_bytes()
    m = zl.MemoryMap.from_file(path)
    r = zl.GGUFReader(m)
    big = np.asarray(r.tensor("big.weight"))      # a zero-copy view: no data read
    assert big.shape == (side, side)
    resident = m.stats().resident_bytes
    rss1 = rss_file_bytes()
    del big
    r.close()
    m.close()
    os.remove(path)
    return size, resident, rss1 - rss0


def read_ahead_kb(path):
    """The kernel's readahead for the disk holding path: a page fault reads this much around it."""
    try:
        dev = os.stat(path).st_dev
        base = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
        for q in (f"{base}/queue/read_ahead_kb", f"{base}/../queue/read_ahead_kb"):
            if os.path.exists(q):
                return int(open(q).read())
    except OSError:
        pass
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=51, help="zigllama opens to take the median of")
    p.add_argument("--gguf-repeat", type=int, default=3, help="gguf.GGUFReader opens (about 26 s each)")
    p.add_argument("--skip-big", action="store_true", help="skip the 1 GiB file")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "vocab.gguf")
        make_vocab_file(path)
        print(f"file: {N_VOCAB} tokens + scores + token types, {N_TENSORS} tensors, "
              f"{os.path.getsize(path) / 2**20:.1f} MiB")
        open_zigllama(path)  # warm the page cache for both readers alike
        ours = median_ms(lambda: open_zigllama(path), args.repeat)
        ours_all = median_ms(lambda: open_zigllama_all_tokens(path), max(5, args.repeat // 5))
        theirs = median_ms(lambda: open_gguf(path), args.gguf_repeat)
        rows = [
            ("zigllama.GGUFReader: open", ours, args.repeat),
            ("zigllama.GGUFReader: open + decode all 262,144 tokens", ours_all, max(5, args.repeat // 5)),
            ("gguf.GGUFReader (gguf package): open", theirs, args.gguf_repeat),
        ]
        print("\n| reader | runs | median ms | gguf / this |")
        print("|---|---:|---:|---:|")
        for name, ms, n in rows:
            print(f"| {name} | {n} | {ms:.2f} | {theirs / ms:.0f}x |")
        ok = ours <= 25 and theirs / ours >= 500
        print(f"\ntarget (<= 25 ms and >= 500x faster): {'met' if ok else 'NOT met'} "
              f"({ours:.2f} ms, {theirs / ours:.0f}x)")

        if not args.skip_big:
            size, resident, rss_growth = bench_big_file(tmp)
            ra = read_ahead_kb(tmp)
            print(f"\n1 GiB file ({size} bytes), cold, opened and its big tensor viewed: "
                  f"{resident} bytes resident in the map ({100 * resident / size:.3f}%), "
                  f"process file RSS grew {rss_growth} bytes ({100 * rss_growth / size:.4f}%); "
                  f"kernel readahead {ra} KiB; target < 1%: "
                  f"{'met' if max(resident, rss_growth) < size / 100 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
