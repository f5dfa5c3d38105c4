"""``zigllama set-metadata FILE KEY VALUE``: change one metadata value of a GGUF file."""
USES_BLAS = False
HELP = ("set one metadata key of a GGUF file: in place when the value keeps its size "
        "(as gguf-set-metadata), otherwise by rewriting the file safely")


def add_arguments(parser):
    parser.add_argument("file", help="the .gguf file to change")
    parser.add_argument("key", help="the metadata key (added if the file does not hold it)")
    parser.add_argument("value", help="the new value, parsed as the key's type (an array as a JSON list)")
    parser.add_argument("--type", metavar="TYPE",
                        help="value type for a new key or a change of type: uint8..int64, float32, "
                             "float64, bool, string, array (default: the key's own type; string for a new key)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change, write nothing")


def run(args):
    from ..gguf_edit import set_metadata
    from ._terminal import escape

    old, new, how = set_metadata(args.file, args.key, args.value, args.type, dry_run=args.dry_run)
    key = escape(args.key)
    if how == "unchanged":
        print(f"{escape(args.file)}: {key} is already {escape(repr(new))}")
        return 0
    before = "(new key)" if old is None else escape(repr(old))
    prefix = "would change" if args.dry_run else "changed"
    print(f"{escape(args.file)}: {prefix} {key}: {before} -> {escape(repr(new))} ({how})")
    return 0
