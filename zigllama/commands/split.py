"""``zigllama split IN [PREFIX]``: a GGUF model in shards, as llama-gguf-split writes them."""
import sys

USES_BLAS = False
HELP = ("split a GGUF model into shards PREFIX-00001-of-0000N.gguf (llama-gguf-split's keys and "
        "names), by tensor count or by size")


def add_arguments(parser):
    parser.add_argument("input", help="the .gguf file to split")
    parser.add_argument("prefix", nargs="?",
                        help="shard path prefix (default: INPUT without .gguf)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--max-tensors", "--split-max-tensors", type=int, metavar="N", dest="max_tensors",
                       help="at most N tensors per shard (default 128)")
    group.add_argument("--max-size", "--split-max-size", metavar="SIZE", dest="max_size",
                       help="at most SIZE bytes of tensor data per shard: 500M, 2G (powers of 1000)")
    parser.add_argument("--no-tensor-first-split", action="store_true",
                        help="the first shard holds the metadata only")
    parser.add_argument("--dry-run", action="store_true", help="show the shards, write nothing")
    parser.add_argument("--force", action="store_true", help="replace shards that exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args):
    from ..gguf_split import parse_size, split_model
    from ._terminal import escape
    from .load import _Progress

    prefix = args.prefix
    if prefix is None:
        prefix = args.input[:-5] if args.input.endswith(".gguf") else args.input
    max_size = parse_size(args.max_size) if args.max_size is not None else None
    progress = _Progress(1, not (args.quiet or args.dry_run) and sys.stderr.isatty())

    def report(done, total):
        progress.total = max(total, 1)
        progress.update(done, "splitting")

    plan = split_model(args.input, prefix, max_tensors=args.max_tensors, max_size=max_size,
                       no_tensor_first_split=args.no_tensor_first_split, force=args.force,
                       dry_run=args.dry_run, progress=report)
    progress.close()
    verb = "would write" if args.dry_run else "wrote"
    print(f"{escape(args.input)}: {verb} {len(plan)} shard(s)")
    for path, group in plan:
        nbytes = sum(info.nbytes for info in group)
        print(f"  {escape(path)}: {len(group)} tensors, {nbytes:,} bytes of tensor data")
    return 0
