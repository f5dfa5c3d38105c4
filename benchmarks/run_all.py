"""Run every benchmark and regenerate benchmarks/README.md.

    python benchmarks/run_all.py            # the full set (about 10 minutes here)
    python benchmarks/run_all.py --quick    # smaller sizes and fewer repeats
    python benchmarks/run_all.py --notes-only   # re-render README.md's notes, run nothing

Each benchmark measures zigllama against its named peer in the same run and
prints its own table; this script records the machine, then each table verbatim,
then the commentary on that table kept in benchmarks/notes/<script stem>.md
(what the columns mean, why the figures come out as they do). The notes never
quote the table's figures, so they stay true when the table is regenerated.
Run it on a quiet machine: the peers share the cores with everything else.
"""
import argparse
import datetime
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NOTES_DIR = os.path.join(HERE, "notes")
# The notes are fenced by these comments so --notes-only can replace them in place.
NOTES_BEGIN = "<!-- notes: benchmarks/notes/{}.md -->"
NOTES_END = "<!-- end of notes -->"

# (title, script, full arguments, quick arguments, what it compares)
BENCHMARKS = [
    ("Tensor operations", "bench_tensor.py", [], ["--repeats", "50"],
     "add / multiply of 1M elements and tensor creation against numpy"),
    ("Allocators", "bench_allocator.py", [], ["--repeats", "11"],
     "alloc + free of 4 MiB from each allocator against numpy.empty"),
    ("GGUF open", "bench_gguf.py", ["--gguf-repeat", "1"], ["--gguf-repeat", "1", "--repeat", "11", "--skip-big"],
     "open (header, metadata, tensor infos) of a 262,144-token vocabulary file against gguf.GGUFReader"),
    ("Command-line start-up", "bench_startup.py", [], ["--quick"],
     "`zigllama inspect` of a 262,144-token vocabulary model as a whole process against `gguf-dump`"),
    ("Dequantization", "bench_quants.py", [], ["--rows", "1024", "--repeat", "3"],
     "million elements per second per type, one and two threads, against gguf.quants.dequantize and np.copyto"),
    ("Dequantization against ggml's C", "bench_ggml_dequant.py", ["--paths", "all"], ["--repeat", "21"],
     "the hot types decoded by ggml's own C dequantizers (built here with -march=native from the checkout "
     "named by GGML_SRC; skipped without it) and by zigllama, one thread, 1024 x 4096, on every SIMD path"),
    ("Quantization", "bench_quantize.py", [], ["--rows", "64", "--repeat", "3"],
     "million values per second per type against gguf.quants.quantize and (with GGML_SRC) ggml's C quantizers"),
    ("Loading a whole model", "bench_load.py", [], ["--repeat", "2"],
     "`zigllama load` of a Q4_K_M-like model against the cost of first touching that much fresh memory"),
    ("Quantized matrix products", "bench_qmatmul.py", [], ["--quick"],
     "qgemm GEMV GB/s against a read sweep of the same bytes, the integer ceiling (the least work an integer "
     "GEMV of the type does, on the same bytes), ggml's vec_dot and sgemv; qgemm's call cost; GEMM against "
     "scipy sgemm"),
    ("GEMM backends", "bench_blas.py", ["--paths", "all"], ["--quick"],
     "GFLOPS of each backend against numpy.matmul; the generic backend also on each narrower SIMD path"),
    ("Thread pool", "bench_threading.py", [], ["--quick"],
     "parallel_for dispatch and submit cost against ThreadPoolExecutor and OpenMP; parallel speed-ups"),
    ("Threads that cooperate (mixed loop)", "bench_mixed.py", ["--noisy", "--spin-control"],
     ["--quick", "--noisy", "--spin-control", "--repeats", "1"],
     "numpy.matmul, the scipy and generic GEMMs, dequantize and softmax called in turn in one process against "
     "each in a loop of its own, with thread-free controls, beside a process that keeps one core busy, and "
     "with numpy's OpenBLAS team not spinning"),
    ("A whole model", "bench_model.py", [], ["--repeat", "1", "--gen", "16"],
     "pp128 and tg32 tokens per second and peak RSS on a Gemma-3-270M-shaped Q4_K_M model against llama.cpp "
     "(llama-cpp-python, from the Python named by ZIGLLAMA_LLAMA_CPP_PYTHON), 1 and 2 threads"),
    ("The demo's stage table", None, [], [],
     "`zigllama demo` on its built-in model"),
]


def machine_lines():
    import numpy as np
    import zigllama as zl
    from zigllama._show_config import config_dict

    cfg = config_dict()
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    feats = ", ".join(k for k, v in cfg["cpu_features"].items() if v)
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- CPU: {cpu}, {os.cpu_count()} logical CPUs; features: {feats}; kernels: {cfg['simd_kernels']}",
        f"- load average at start (1/5/15 min): {load}",
        f"- Python {platform.python_version()}, numpy {np.__version__}, zigllama {zl.__version__}, "
        f"compiler {cfg['compiler']}, OpenMP {'on' if cfg['openmp']['built'] else 'off'}",
    ]


def run_script(script, args):
    cmd = [sys.executable, os.path.join(HERE, script)] + args
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        return f"(failed with exit code {proc.returncode})\n\n```\n{proc.stderr.strip()[-2000:]}\n```", took
    return proc.stdout.strip(), took


def run_demo():
    cmd = [sys.executable, "-m", "zigllama", "demo"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = proc.stdout.strip() if proc.returncode == 0 else f"(failed)\n```\n{proc.stderr[-2000:]}\n```"
    return out, time.perf_counter() - t0


def notes_name(script):
    return "demo" if script is None else os.path.splitext(script)[0]


def notes_block(script):
    """The section's commentary from benchmarks/notes/, fenced; [] when it has none."""
    name = notes_name(script)
    path = os.path.join(NOTES_DIR, name + ".md")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        text = f.read().strip()
    return ["", NOTES_BEGIN.format(name), "", text, "", NOTES_END]


def strip_notes(lines):
    """lines without any fenced notes block (so re-rendering never doubles them)."""
    out, inside = [], False
    for line in lines:
        if line.startswith("<!-- notes: "):
            inside = True
        elif inside and line == NOTES_END:
            inside = False
        elif not inside:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return out


def rerender_notes(path):
    """Rewrite README.md's notes from benchmarks/notes/ without running a benchmark.

    The README is cut at the known section titles (a benchmark's own output may hold
    other headings); each known section keeps its table and gets its current notes.
    A benchmark the README has no section for gets one that says how to measure it,
    so the lessons' links to its notes resolve.
    """
    with open(path, encoding="utf-8") as f:
        lines = f.read().rstrip("\n").split("\n")
    titles = {f"## {b[0]}": b for b in BENCHMARKS}
    head, sections, current = [], {}, None
    for line in lines:
        if line in titles:
            current = line
            sections[current] = []
        elif current is None:
            head.append(line)
        else:
            sections[current].append(line)
    parts = strip_notes(head)
    for title, script, full, _quick, what in BENCHMARKS:
        key = f"## {title}"
        if key in sections:
            body = strip_notes(sections[key])
        else:
            cmd = f"python benchmarks/{script} {' '.join(full)}".strip()
            body = ["", f"{what}. Not measured in this file's run: `{cmd}` prints the table."]
        parts += [""] + [key] + body + notes_block(script)
    text = "\n".join(parts) + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    p.add_argument("--output", default=os.path.join(HERE, "README.md"), help="where to write; - for stdout")
    p.add_argument("--only", default="", help="comma-separated scripts to run (default all)")
    p.add_argument("--notes-only", action="store_true",
                   help="run nothing: re-render the notes of the existing --output from benchmarks/notes/")
    args = p.parse_args(argv)
    if args.notes_only:
        if args.output == "-":
            p.error("--notes-only rewrites a file; give --output a path")
        rerender_notes(args.output)
        print(f"re-rendered the notes of {args.output}", file=sys.stderr)
        return 0
    only = {s.strip() for s in args.only.split(",") if s.strip()}

    parts = ["# zigllama benchmarks", "",
             "Regenerated by `python benchmarks/run_all.py`" + (" --quick" if args.quick else "") +
             ". Every table compares zigllama with its named peer in the same run "
             "(medians of repeats); ratios are what to read, absolute numbers move with the machine's load.",
             "", "## Machine", ""] + machine_lines()
    for title, script, full, quick, what in BENCHMARKS:
        if only and (script or "demo") not in only:
            continue
        print(f"running {script or 'zigllama demo'} ...", file=sys.stderr, flush=True)
        out, took = run_demo() if script is None else run_script(script, quick if args.quick else full)
        cmd = "zigllama demo" if script is None else \
            f"python benchmarks/{script} {' '.join(quick if args.quick else full)}".strip()
        parts += ["", f"## {title}", "", f"{what}. `{cmd}` ({took:.0f} s)", ""]
        is_markdown = any(line.startswith("|") for line in out.splitlines())
        parts.append(out if is_markdown else "```\n" + out + "\n```")
        parts += notes_block(script)
    text = "\n".join(parts) + "\n"
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    with open(args.output, "w") as f:
        f.write(text)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
