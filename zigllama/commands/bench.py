"""``zigllama bench``: the comparison tables, each against its named peer.

Runs the benchmarks that ship with the package (``zigllama.benchmarks``) and prints
their tables: tensor operations and allocators against numpy, GGUF open, the
command line's start-up (against ``gguf-dump``) and dequantization against the
``gguf`` package (``pip install gguf`` for those peers),
loading a whole model against the cost of fresh memory,
GEMM backends against numpy.matmul, the pool against ThreadPoolExecutor and
OpenMP, and the demo's stage table.
"""
import sys

HELP = "run the benchmarks against their peers (numpy, gguf, ThreadPoolExecutor) and print the tables"

NAMES = ("tensor", "allocator", "gguf", "startup", "quants", "load", "blas", "threading", "demo")


def add_arguments(parser):
    parser.add_argument("--full", action="store_true",
                        help="full sizes and repeats (about 10 minutes; default: a quick pass)")
    parser.add_argument("--only", default="", metavar="NAMES",
                        help=f"comma-separated subset of: {', '.join(NAMES)}")
    parser.add_argument("--output", default="-", metavar="FILE", help="write markdown here (default: stdout)")


def run(args):
    from ..benchmarks import run_all

    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in only if n not in NAMES]
    if unknown:
        print(f"zigllama bench: error: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}",
              file=sys.stderr)
        return 2
    scripts = ["demo" if n == "demo" else f"bench_{n}.py" for n in only]
    argv = ["--output", args.output] + ([] if args.full else ["--quick"])
    if scripts:
        argv += ["--only", ",".join(scripts)]
    return run_all.main(argv)
