"""``zigllama quantize IN OUT TYPE``: quantize a GGUF model as llama-quantize does."""
import sys

HELP = "quantize a GGUF model to a llama-quantize file type (Q4_K_M, Q8_0, ...) with its per-tensor rules"
USES_BLAS = False


def add_arguments(parser):
    from ..model_quantizer import FILE_TYPE_ALIASES, FILE_TYPES

    parser.add_argument("input", metavar="IN", help="the model (.gguf): F32, F16 or BF16 tensors")
    parser.add_argument("output", metavar="OUT", nargs="?", help="the quantized model to write (not with --dry-run)")
    parser.add_argument("type", metavar="TYPE",
                        help="file type: " + ", ".join(list(FILE_TYPES) + list(FILE_TYPE_ALIASES)))
    parser.add_argument("--dry-run", action="store_true", help="print the per-tensor plan; write nothing")
    parser.add_argument("--allow-requantize", action="store_true",
                        help="allow quantizing tensors that are already quantized (loses quality)")
    parser.add_argument("--imatrix", metavar="FILE", help="importance matrix (llama.cpp's imatrix .gguf or .dat)")
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="threads (default: all)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--quiet", action="store_true", help="no plan, no progress bar")


def run(args):
    from .._core.gguf_format import GGUFReader
    from ..errors import QuantizationError
    from ..model_quantizer import format_plan, load_imatrix, plan_quantization, quantize_model

    if args.threads is not None and args.threads < 1:
        raise QuantizationError(f"--threads must be at least 1, got {args.threads}")
    if args.output is None and not args.dry_run:
        # two positionals given: IN TYPE
        raise QuantizationError("OUT is required unless --dry-run")
    imatrix = load_imatrix(args.imatrix) if args.imatrix else None
    if args.dry_run:
        with GGUFReader(args.input) as r:
            plan = plan_quantization(r, args.type, has_imatrix=imatrix is not None)
        print(format_plan(plan))
        return 0
    plan = quantize_model(args.input, args.output, args.type, allow_requantize=args.allow_requantize,
                          imatrix=imatrix, threads=args.threads, progress=not args.quiet and sys.stderr.isatty(),
                          force=args.force)
    if not args.quiet:
        print(format_plan(plan))
        print(f"wrote {args.output}")
    return 0
