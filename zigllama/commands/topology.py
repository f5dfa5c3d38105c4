"""``zigllama topology``: what this machine and this build give zigllama."""
import json

HELP = "show the CPU, build, OpenMP, SIMD kernels and thread settings"


def add_arguments(parser):
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def run(args):
    from .._show_config import config_dict, config_lines

    if args.json:
        print(json.dumps(config_dict(), indent=2, default=str))
    else:
        print("\n".join(config_lines()))
    return 0
