"""``zigllama run MODEL``: generate text with a whole model, streaming tokens as they come.

The prompt is tokenized with the file's own vocabulary (SentencePiece vocabularies;
for others pass ``--tokens 2,818,5279``). The closing line gives prompt and
generation speed in tokens per second and the process's peak memory, like
llama.cpp's timing summary; ``--json`` prints the ids and timings instead.
"""
import json
import resource
import sys
import time

HELP = "generate text with a whole llama-family model (llama, qwen2, gemma, gemma2, gemma3)"


def add_arguments(parser):
    parser.add_argument("model", metavar="MODEL", help="a GGUF model file")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("-p", "--prompt", default="", help="prompt text (default: empty, BOS only)")
    src.add_argument("--tokens", help="prompt as comma-separated token ids instead of text")
    parser.add_argument("-n", "--n-predict", type=int, default=64, help="tokens to generate (default 64)")
    parser.add_argument("-t", "--threads", type=int, default=None,
                        help="threads (default: ZIGLLAMA_NUM_THREADS or all CPUs)")
    parser.add_argument("-c", "--ctx-size", type=int, default=None,
                        help="context positions (default: the model's, at most 4096)")
    parser.add_argument("--temp", type=float, default=0.8, help="temperature; 0 = greedy (default 0.8)")
    parser.add_argument("--top-k", type=int, default=40, help="top-k; 0 = off (default 40)")
    parser.add_argument("--top-p", type=float, default=0.95, help="top-p (default 0.95)")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed (default: random)")
    parser.add_argument("--ignore-eos", action="store_true", help="keep generating past the end-of-text token")
    parser.add_argument("--json", action="store_true", help="print token ids and timings as JSON")


def _peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(args):
    from zigllama import InvalidToken, Model, ModelError, Sampler, Tokenizer
    from zigllama.tokenizer import StreamDecoder

    if args.n_predict < 0:
        raise ModelError(f"-n must be >= 0, got {args.n_predict}")
    t0 = time.perf_counter()
    model = Model.from_file(args.model, threads=args.threads, n_ctx=args.ctx_size)
    load_s = time.perf_counter() - t0
    try:
        tok = Tokenizer(model.reader.metadata)
        if args.tokens is not None:
            try:
                prompt = [int(t) for t in args.tokens.replace(" ", "").split(",") if t]
            except ValueError:
                raise InvalidToken(f"--tokens takes comma-separated integers, got {args.tokens!r}") from None
        else:
            prompt = tok.encode(args.prompt)
        if not prompt:
            raise InvalidToken("the prompt has no tokens (the vocabulary adds no BOS): give --tokens")
        sampler = Sampler(temperature=args.temp, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
        stream = StreamDecoder(tok)
        out = sys.stdout

        def show(tid):
            if not args.json:
                out.write(stream.push(tid))
                out.flush()

        if not args.json and args.tokens is None:
            out.write(args.prompt)
            out.flush()
            stream.first = not args.prompt
        ids = model.generate(prompt, args.n_predict, sampler, on_token=show, stop_at_eos=not args.ignore_eos)
        t = model.last_timings
        pp = t["prompt_tokens"] / t["prompt_seconds"] if t["prompt_seconds"] > 0 else 0.0
        # The first generated token comes from the prompt's logits: speed counts the rest.
        n_gen = max(0, t["generated_tokens"] - 1)
        tg = n_gen / t["generation_seconds"] if t["generation_seconds"] > 0 and n_gen else 0.0
        if args.json:
            print(json.dumps(dict(prompt_ids=prompt, generated_ids=ids, load_seconds=load_s, **t,
                                  prompt_tokens_per_second=pp, generation_tokens_per_second=tg,
                                  peak_rss_mib=_peak_rss_mib(), threads=model.threads)))
        else:
            out.write(stream.flush() + "\n")
            print(f"\nload {load_s * 1e3:.1f} ms | prompt {t['prompt_tokens']} tokens, {t['prompt_seconds'] * 1e3:.1f} ms "
                  f"({pp:.1f} tok/s) | generation {n_gen} tokens, {t['generation_seconds'] * 1e3:.1f} ms "
                  f"({tg:.1f} tok/s) | threads {model.threads} | peak RSS {_peak_rss_mib():.0f} MiB",
                  file=sys.stderr)
    finally:
        model.close()
    return 0
