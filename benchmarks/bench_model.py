"""A whole model: zigllama against llama.cpp (llama-cpp-python) on the same file, same run.

    python benchmarks/bench_model.py                       # writes the Gemma-3-270M-shaped Q4_K_M model
    python benchmarks/bench_model.py --model m.gguf --threads 1,2 --repeat 3
    python benchmarks/bench_model.py --llama-python /path/to/python   # a Python that has llama_cpp

Prompt processing (pp: ``--pp`` tokens in one call, only the last position's
logits) and generation (tg: one token per call after a short prompt) in tokens per
second, and each process's peak RSS. Every measurement runs in a fresh process so
that peak RSS is that engine's own; the engines alternate within each round and the
ratios are medians of per-round ratios. At one thread the speeds are also given per
second of the process's CPU time, which a busy machine's time slicing leaves alone.
llama.cpp is an optional peer: without
llama_cpp importable by ``--llama-python`` (default: this Python) its columns say so.
Also reported: zigllama's time split by stage, and whether zigllama's tokenizer
gives llama.cpp's token ids on sample texts.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

SAMPLE_TEXTS = ["Hello world", " leading space", "two  spaces and\ttabs\nnewline", "def main(argv=None):",
                "import numpy as np", "The quick brown fox jumps over the lazy dog.", "café naïve résumé",
                "你好，世界", "emoji 😀🚀 mixed", "<start_of_turn>user\nhi<end_of_turn>", "", "   ", "x" * 40]


def _peak_rss_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _prompt(n, n_vocab, first):
    # Token ids spread over the vocabulary, after BOS: the same for both engines.
    return [first] + [(7919 * i + 13) % (n_vocab - 300) + 300 for i in range(1, n)]


def child_zigllama(args):
    sys.path.insert(0, os.path.dirname(HERE))
    import numpy as np

    import zigllama as zl

    t0 = time.perf_counter()
    m = zl.Model(args.model, threads=args.threads, n_ctx=args.ctx)
    load = time.perf_counter() - t0
    bos = int(m.reader.metadata.get("tokenizer.ggml.bos_token_id", 1))
    prompt = _prompt(args.pp, m.n_vocab, bos)
    m.forward(prompt[:8])                       # warm-up: first touches of the weights
    pp_times, pp_cpu, pp_stages = [], [], {}
    for _ in range(args.inner):
        m.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        m.forward(prompt)
        pp_times.append(time.perf_counter() - t0)
        pp_cpu.append(time.process_time() - c0)
    m.reset()
    m.forward(prompt, timings=pp_stages)
    # Decoding as llama.cpp does it: the logits land in one buffer the engine owns.
    logits = np.empty(m.n_vocab, dtype=np.float32)
    m.reset()
    m.forward(prompt[:4])
    tok = prompt[4]
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(args.gen):
        m.forward([tok], out=logits)
        tok = int(logits.argmax())
    tg = time.perf_counter() - t0
    tg_cpu = time.process_time() - c0
    # The stage split of decoding from a second, timed run (timing costs a little).
    m.reset()
    m.forward(prompt[:4])
    tok, tg_stages = prompt[4], {}
    for i in range(args.gen):
        m.forward([tok], timings=tg_stages, out=logits)
        tok = int(logits.argmax())
    print(json.dumps(dict(pp=args.pp / min(pp_times), tg=args.gen / tg, rss=_peak_rss_mib(), load=load,
                          pp_cpu=args.pp / min(pp_cpu), tg_cpu=args.gen / tg_cpu,
                          pp_stages={k: v / 1 for k, v in pp_stages.items()},
                          tg_stages={k: v / args.gen for k, v in tg_stages.items()},
                          qgemm=m.use_qgemm)))


def child_llama_cpp(args):
    try:
        import llama_cpp
    except ImportError as e:
        print(json.dumps(dict(absent=str(e))))
        return
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=args.model, n_ctx=args.ctx, n_batch=max(args.pp, 512), n_ubatch=max(args.pp, 512),
                          n_threads=args.threads, n_threads_batch=args.threads, verbose=False, logits_all=False)
    load = time.perf_counter() - t0
    bos = llm.token_bos()
    prompt = _prompt(args.pp, llm.n_vocab(), bos)
    llm.eval(prompt[:8])
    pp_times, pp_cpu = [], []
    for _ in range(args.inner):
        llm.reset()
        t0, c0 = time.perf_counter(), time.process_time()
        llm.eval(prompt)
        pp_times.append(time.perf_counter() - t0)
        pp_cpu.append(time.process_time() - c0)
    llm.reset()
    llm.eval(prompt[:4])
    tok = prompt[4]
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(args.gen):
        llm.eval([tok])
        tok = int(llm.scores[llm.n_tokens - 1].argmax())
    tg = time.perf_counter() - t0
    tg_cpu = time.process_time() - c0
    toks = [llm.tokenize(t.encode("utf-8"), add_bos=True, special=False) for t in SAMPLE_TEXTS]
    print(json.dumps(dict(pp=args.pp / min(pp_times), tg=args.gen / tg, rss=_peak_rss_mib(), load=load,
                          pp_cpu=args.pp / min(pp_cpu), tg_cpu=args.gen / tg_cpu,
                          version=llama_cpp.__version__, tokens=toks)))


def run_child(python, engine, args, threads):
    cmd = [python, os.path.abspath(__file__), "--child", engine, "--model", args.model, "--threads", str(threads),
           "--pp", str(args.pp), "--gen", str(args.gen), "--ctx", str(args.ctx), "--inner", str(args.inner)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return dict(failed=(proc.stderr or proc.stdout).strip()[-800:])
    return json.loads(lines[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="GGUF model (default: write the Gemma-3-270M-shaped Q4_K_M model)")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--pp", type=int, default=128, help="prompt tokens (default 128)")
    p.add_argument("--gen", type=int, default=32, help="generated tokens (default 32)")
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--repeat", type=int, default=3, help="rounds, engines alternating (default 3)")
    p.add_argument("--inner", type=int, default=2, help="prompt passes per process, best taken (default 2)")
    p.add_argument("--llama-python", default=os.environ.get("ZIGLLAMA_LLAMA_CPP_PYTHON", sys.executable),
                   help="a Python interpreter with llama_cpp installed (default: this one)")
    p.add_argument("--child", choices=("zigllama", "llama.cpp"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.threads = int(args.threads)
    if args.child == "zigllama":
        return child_zigllama(args)
    if args.child == "llama.cpp":
        return child_llama_cpp(args)

    tmp = None
    if args.model is None:
        tmp = tempfile.TemporaryDirectory(prefix="zigllama-bench-model-")
        args.model = os.path.join(tmp.name, "gemma3-270m-q4_k_m.gguf")
        subprocess.run([sys.executable, os.path.join(HERE, "q4_k_m_model.py"), "--shape", "gemma3-270m", args.model],
                       check=True, capture_output=True)
    threads = [int(t) for t in args.threads.split(",")]
    results = {t: {"zigllama": [], "llama.cpp": []} for t in threads}
    for _ in range(args.repeat):
        for t in threads:
            for engine, python in (("zigllama", sys.executable), ("llama.cpp", args.llama_python)):
                results[t][engine].append(run_child(python, engine, args, t))
    size_mib = os.path.getsize(args.model) / 2**20
    print(f"model: `{os.path.basename(args.model)}`, {size_mib:.0f} MiB; pp{args.pp} (last position's logits), "
          f"tg{args.gen} after a 4-token prompt; n_ctx {args.ctx}; {args.repeat} rounds, engines alternating; "
          f"load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    first_ll = next((r for t in threads for r in results[t]["llama.cpp"] if "pp" in r), None)
    if first_ll is None:
        why = next((r.get("absent") or r.get("failed") for t in threads for r in results[t]["llama.cpp"]), "")
        absent = any("absent" in r for t in threads for r in results[t]["llama.cpp"])
        print(f"\nllama.cpp: {'absent' if absent else 'failed'} ({why.splitlines()[-1] if why else 'no result'})"
              + (": `pip install llama-cpp-python` into the Python given by --llama-python" if absent else ""))
    else:
        print(f"llama.cpp: llama-cpp-python {first_ll['version']}")
    print()
    print("| threads | metric | zigllama | llama.cpp | zigllama / llama.cpp |")
    print("|---:|---|---:|---:|---:|")
    for t in threads:
        z, ll = results[t]["zigllama"], results[t]["llama.cpp"]
        metrics = [("pp", f"pp{args.pp} tok/s"), ("tg", f"tg{args.gen} tok/s"), ("rss", "peak RSS MiB")]
        if t == 1:
            # Per second of the process's CPU time: what a busy machine's time slicing
            # does not change (at more threads, idle spinning would count as work).
            metrics[2:2] = [("pp_cpu", f"pp{args.pp} tok/CPU-s"), ("tg_cpu", f"tg{args.gen} tok/CPU-s")]
        for metric, label in metrics:
            zs = [r[metric] for r in z if metric in r]
            ls = [r[metric] for r in ll if metric in r]
            ratios = [a[metric] / b[metric] for a, b in zip(z, ll) if metric in a and metric in b]
            zm = f"{statistics.median(zs):.1f}" if zs else "failed"
            lm = f"{statistics.median(ls):.1f}" if ls else "absent"
            rt = f"{statistics.median(ratios):.2f}" if ratios else ""
            print(f"| {t} | {label} | {zm} | {lm} | {rt} |")
        fails = [r["failed"] for r in z if "failed" in r]
        if fails:
            print(f"\nzigllama failed at {t} threads: {fails[0]}")
    kv_mib = 0.0
    try:
        sys.path.insert(0, os.path.dirname(HERE))
        import zigllama as zl

        with zl.Model(args.model, threads=1, n_ctx=args.ctx) as m:
            hp = m.hparams
            kv_mib = 2 * hp.n_layer * hp.n_head_kv * hp.head_dim * 4 * (args.pp + 1) / 2**20
            tok = zl.Tokenizer(m.reader.metadata)
            ours = [tok.encode(s) if tok.model == "llama" else None for s in SAMPLE_TEXTS]
    except Exception as e:  # the table above already says what failed
        ours = None
        print(f"\n(zigllama could not be loaded here: {e})")
    rss = [r["rss"] for t in threads for r in results[t]["zigllama"] if "rss" in r]
    if rss:
        budget = size_mib + kv_mib + 150
        print(f"\nzigllama peak RSS {max(rss):.0f} MiB against the goal file + KV cache used + 150 MiB = "
              f"{budget:.0f} MiB: {'within' if max(rss) <= budget else 'OVER'}")
    runs = {t: [r for r in results[t]["zigllama"] if "tg_stages" in r] for t in threads}
    if any(runs.values()):
        names = next(list(r["pp_stages"]) for t in threads for r in runs[t])
        qg = next(r["qgemm"] for t in threads for r in runs[t])
        print(f"\nzigllama's time by stage (ms, medians over rounds; pp per {args.pp}-token prompt, tg per "
              f"token; quantized matmul: {'qgemm' if qg else 'dequantize + BLAS'}):\n")
        print("| stage | " + " | ".join(f"pp {t}T | tg {t}T" for t in threads) + " |")
        print("|---|" + "---:|---:|" * len(threads))

        def med(t, kind, k):
            v = [r[kind].get(k, 0.0) for r in runs[t]]
            return statistics.median(v) * 1e3 if v else float("nan")

        for k in names + ["total"]:
            cells = []
            for t in threads:
                if k == "total":
                    cells += [f"{sum(med(t, 'pp_stages', n) for n in names):.2f}",
                              f"{sum(med(t, 'tg_stages', n) for n in names):.3f}"]
                else:
                    cells += [f"{med(t, 'pp_stages', k):.2f}", f"{med(t, 'tg_stages', k):.3f}"]
            print(f"| {k} | " + " | ".join(cells) + " |")
    if first_ll is not None and ours is not None:
        same = sum(a == b for a, b in zip(ours, first_ll["tokens"]))
        print(f"\ntokenizer: zigllama gives llama.cpp's token ids on {same} of {len(SAMPLE_TEXTS)} sample texts")
        for s, a, b in zip(SAMPLE_TEXTS, ours, first_ll["tokens"]):
            if a != b:
                print(f"- {s!r}: zigllama {a} llama.cpp {b}")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
