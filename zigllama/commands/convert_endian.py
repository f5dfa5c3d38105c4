"""``zigllama convert-endian IN OUT big|little``: a GGUF file in the other byte order."""
import sys

USES_BLAS = False
HELP = ("write a GGUF file in the other byte order: header, metadata, tensor infos, plain "
        "tensors and the scales inside quantized blocks")


def add_arguments(parser):
    parser.add_argument("input", help="the .gguf file to convert")
    parser.add_argument("output", help="the converted .gguf file")
    parser.add_argument("order", choices=("big", "little", "native"), help="the byte order to write")
    parser.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args):
    from ..gguf_endian import convert_endian
    from ._files import atomic_output
    from ._terminal import escape
    from .load import _Progress

    order = sys.byteorder if args.order == "native" else args.order
    progress = _Progress(1, not args.quiet and sys.stderr.isatty())

    def report(done, total):
        progress.total = max(total, 1)
        progress.update(done, "converting")

    with atomic_output(args.output, (args.input,), args.force) as tmp:
        converted = convert_endian(args.input, tmp, order, progress=report)
        if not converted:
            from ..errors import GGUFError
            raise GGUFError(f"{args.input} is already {order}-endian; nothing to convert")
    progress.close()
    print(f"{escape(args.output)}: written, {order}-endian")
    return 0
