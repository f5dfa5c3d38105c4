"""Start-up of the command line: ``zigllama inspect MODEL`` as a whole process
against the gguf package's ``gguf-dump MODEL``, in the same run.

The model has a 262,144-token vocabulary (tokens, scores, token types) and 250
F32 tensors, about 250 MB in all (25 MB with --quick). Each contender runs as a
fresh process (stdout to /dev/null); rounds alternate between contenders and the
medians are reported with the ratio. Reference rows: the interpreter alone,
``import numpy`` (which the GGUF reader needs), and importing every name of the
package eagerly (what every command paid before the imports became lazy).
The target: ``zigllama inspect`` in at most 150 ms.

    python benchmarks/bench_startup.py                 # gguf-dump once (~20 s or more)
    python benchmarks/bench_startup.py --quick --gguf-repeat 1
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

N_VOCAB = 262144
N_TENSORS = 250
TARGET_MS = 150


def make_model(path, tensor_elements):
    import zigllama as zl

    with zl.GGUFWriter(path) as w:
        w.add("general.architecture", "gemma3")
        w.add("general.name", "startup benchmark")
        w.add("gemma3.context_length", 131072, zl.GGUFValueType.UINT32)
        w.add("tokenizer.ggml.model", "llama")
        pieces = ["▁", "the", "ing", "é", "中", "<0x0A>", "s", "tion", "er", "ly"]
        w.add_array("tokenizer.ggml.tokens", [f"{pieces[i % 10]}{i}{pieces[(i * 7) % 10]}" for i in range(N_VOCAB)])
        w.add_array("tokenizer.ggml.scores", np.linspace(-1, 0, N_VOCAB, dtype=np.float32))
        w.add_array("tokenizer.ggml.token_type", np.ones(N_VOCAB, dtype=np.int32))
        rows = max(1, tensor_elements // 1024)
        for i in range(N_TENSORS):
            w.add_tensor_info(f"blk.{i // 10}.t{i % 10}.weight", (rows, 1024), zl.GGMLType.F32)
        w.write_header()
        block = np.zeros((rows, 1024), np.float32)
        for i in range(N_TENSORS):
            w.write_tensor(f"blk.{i // 10}.t{i % 10}.weight", block)


def run_seconds(argv, env):
    t = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed: {proc.stderr.decode(errors='replace')[-300:]}")
    return elapsed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=21, help="rounds of the zigllama contenders")
    p.add_argument("--gguf-repeat", type=int, default=1, help="runs of gguf-dump (about 20 s or more each)")
    p.add_argument("--quick", action="store_true", help="a 25 MB model and 7 rounds")
    args = p.parse_args(argv)
    repeat = 7 if args.quick else args.repeat

    import zigllama

    root = os.path.dirname(os.path.dirname(os.path.abspath(zigllama.__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    py = sys.executable
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "model.gguf")
        make_model(model, (10 if args.quick else 256) * 1024)
        size = os.path.getsize(model)
        contenders = {
            "python -c pass (the interpreter)": [py, "-c", "pass"],
            "python -c 'import numpy'": [py, "-c", "import numpy"],
            "zigllama --version": [py, "-m", "zigllama", "--version"],
            "zigllama inspect MODEL": [py, "-m", "zigllama", "inspect", model],
            "zigllama inspect --json MODEL": [py, "-m", "zigllama", "inspect", "--json", model],
            "import every zigllama name (eager)": [py, "-c", "import zigllama as z; [getattr(z, n) for n in z.__all__]"],
        }
        samples = {name: [] for name in contenders}
        for argv_ in contenders.values():  # warm the page cache and .pyc files
            run_seconds(argv_, env)
        for _ in range(repeat):
            for name, argv_ in contenders.items():
                samples[name].append(run_seconds(argv_, env))
        gguf_dump = [py, "-m", "gguf.scripts.gguf_dump", model]
        gguf_times = [run_seconds(gguf_dump, env) for _ in range(args.gguf_repeat)]
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    gguf_ms = statistics.median(gguf_times) * 1e3
    print(f"model: {N_VOCAB} tokens + scores + token types, {N_TENSORS} F32 tensors, {size / 1e6:.0f} MB; "
          f"load average {load}")
    print("\n| whole process | runs | median ms | gguf-dump / this |")
    print("|---|---:|---:|---:|")
    for name, times in samples.items():
        ms = statistics.median(times) * 1e3
        print(f"| {name} | {len(times)} | {ms:.0f} | {gguf_ms / ms:.0f}x |")
    print(f"| gguf-dump MODEL (the gguf package) | {len(gguf_times)} | {gguf_ms:.0f} | 1x |")
    inspect_ms = statistics.median(samples["zigllama inspect MODEL"]) * 1e3
    floor = statistics.median(samples["python -c 'import numpy'"]) * 1e3
    print(f"\ntarget (zigllama inspect <= {TARGET_MS} ms): {'met' if inspect_ms <= TARGET_MS else 'NOT met'} "
          f"({inspect_ms:.0f} ms; of which the interpreter with numpy, which the reader needs, {floor:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
