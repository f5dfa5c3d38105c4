"""``zigllama validate FILE...``: check GGUF files against every rule of the format."""
import sys

USES_BLAS = False
HELP = "check GGUF files: exit 0 if every file is valid, 1 with the reason if not"


def add_arguments(parser):
    parser.add_argument("files", nargs="+", metavar="FILE", help="a .gguf file")


def run(args):
    from .._core.gguf_format import GGUFReader
    from ..errors import GGUFError
    from ._terminal import escape

    status = 0
    for path in args.files:
        try:
            with GGUFReader(path) as r:
                r.validate()
                summary = f"GGUF v{r.version}, {r.kv_count} keys, {r.tensor_count} tensors"
        except (GGUFError, OSError) as e:
            print(f"{escape(path)}: invalid: {type(e).__name__}: {escape(e)}", file=sys.stderr)
            status = 1
        else:
            print(f"{escape(path)}: valid ({summary})")
    return status
