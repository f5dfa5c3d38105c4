"""``zigllama load FILE``: dequantize every tensor of a model to float32, timed."""
import resource
import sys
import time

from ._terminal import escape

HELP = "dequantize every tensor of a GGUF model to float32; report time, GB/s and peak memory"


def add_arguments(parser):
    parser.add_argument("file", help="a .gguf file (or the first shard of a split model)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="threads to use (default: ZIGLLAMA_NUM_THREADS or every CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


class _Progress:
    """A one-line progress bar on stderr, redrawn at most ten times a second."""

    WIDTH = 30

    def __init__(self, total, enabled):
        self.total = max(total, 1)
        self.enabled = enabled
        self.last = 0.0

    def update(self, done, label, force=False):
        now = time.perf_counter()
        if not self.enabled or (not force and now - self.last < 0.1):
            return
        self.last = now
        filled = int(self.WIDTH * done / self.total)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        label = escape(label)[:40]  # a tensor name: from the file
        sys.stderr.write(f"\r[{bar}] {100 * done / self.total:5.1f}% {label:<40}")
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def run(args):
    from .._config import resolve_threads
    from .._core.gguf_model_loader import GGUFModelLoader

    threads = resolve_threads(args.threads)
    loaded = []
    per_type = {}
    with GGUFModelLoader(args.file) as model:
        infos = model.tensors
        total = sum(info.n_elements for info in infos)
        progress = _Progress(total, not args.quiet)
        done = 0
        start = time.perf_counter()
        for info in infos:
            t0 = time.perf_counter()
            loaded.append(model.load_tensor(info.name, threads=threads))
            elapsed = time.perf_counter() - t0
            name = info.ggml_type.name
            count, elements, seconds = per_type.get(name, (0, 0, 0.0))
            per_type[name] = (count + 1, elements + info.n_elements, seconds + elapsed)
            done += info.n_elements
            progress.update(done, info.name)
        seconds = time.perf_counter() - start
        progress.update(done, "done", force=True)
        progress.close()
    out_bytes = sum(a.nbytes for a in loaded)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    print(f"{escape(args.file)}: {len(loaded)} tensors, {total:,} elements, {threads} thread(s)")
    print(f"time {seconds * 1e3:,.1f} ms, output {out_bytes / 1e9:.3f} GB float32, "
          f"{out_bytes / 1e9 / max(seconds, 1e-9):.2f} GB/s, peak memory {peak / 2**20:,.0f} MiB")
    print("type     tensors      elements      ms     M/s")
    for name, (count, elements, secs) in sorted(per_type.items(), key=lambda kv: -kv[1][1]):
        rate = elements / max(secs, 1e-9) / 1e6
        print(f"{name:<8} {count:>7} {elements:>13,} {secs * 1e3:>7.1f} {rate:>7,.0f}")
    return 0
