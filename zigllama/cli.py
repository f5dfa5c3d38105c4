"""The ``zigllama`` command line.

Each subcommand lives in ``zigllama/commands/<name>.py`` and provides ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``. Errors of the zigllama family
become a one-line message on stderr and exit status 1; bad arguments exit 2.
"""
import argparse
import importlib
import sys

from .errors import ZigLlamaError

COMMANDS = ("demo", "inspect", "validate", "load", "bench", "topology", "run")


def _available_commands():
    for name in COMMANDS:
        try:
            yield name, importlib.import_module(f"zigllama.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"zigllama.commands.{name}":
                raise


def build_parser():
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="zigllama",
        description="zigllama: from a GGUF model file on disk to a matrix product on every core.",
    )
    parser.add_argument("--version", action="version", version=f"zigllama {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _available_commands():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except ZigLlamaError as e:
        print(f"zigllama {args.command}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"zigllama {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"zigllama {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
