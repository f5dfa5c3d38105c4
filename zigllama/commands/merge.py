"""``zigllama merge FIRST-SHARD OUT``: the shards of a split model as one GGUF file."""
import sys

USES_BLAS = False
HELP = ("merge the shards of a split model (llama-gguf-split's or zigllama's) into one GGUF "
        "file; split then merge gives the original back byte for byte")


def add_arguments(parser):
    parser.add_argument("input", help="a shard, NAME-0000i-of-0000n.gguf (names all the others)")
    parser.add_argument("output", help="the merged .gguf file")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args):
    from ..gguf_split import merge_model
    from ._terminal import escape
    from .load import _Progress

    progress = _Progress(1, not args.quiet and sys.stderr.isatty())

    def report(done, total):
        progress.total = max(total, 1)
        progress.update(done, "merging")

    paths = merge_model(args.input, args.output, force=args.force, progress=report)
    progress.close()
    print(f"{escape(args.output)}: merged from {len(paths)} shard(s)")
    return 0
