"""The ``zigllama`` command line.

Each subcommand lives in ``zigllama/commands/<module>.py`` and provides ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int`` (and ``USES_BLAS = False`` if it
never multiplies matrices); a command's module is imported only when that command
runs (``--help`` imports them all), so start-up stays short.
Errors become a one-line message on stderr and exit status 1
(``ZIGLLAMA_TRACEBACK=1`` shows the traceback); bad arguments exit 2; a closed
pipe (``zigllama inspect MODEL | head -1``) ends quietly with 141, as ``cat`` does.
"""
import argparse
import importlib
import os
import sys

# command name -> module in zigllama/commands (one line per command)
COMMANDS = {
    "demo": "demo",
    "inspect": "inspect",
    "validate": "validate",
    "load": "load",
    "bench": "bench",
    "topology": "topology",
    "set-metadata": "set_metadata",
    "new-metadata": "new_metadata",
    "convert-endian": "convert_endian",
    "split": "split",
    "merge": "merge",
    "quantize": "quantize",
}

_EPILOG = "Run 'zigllama COMMAND --help' for a command's options."


def _command_module(name):
    return importlib.import_module(f"zigllama.commands.{COMMANDS[name]}")


def _add_command(sub, name, module):
    p = sub.add_parser(name, help=module.HELP, description=module.HELP)
    module.add_arguments(p)
    p.set_defaults(_run=module.run)
    return p


def build_parser(only=None):
    """The argument parser; with `only`, just that command's module is imported."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="zigllama",
        description="zigllama: from a GGUF model file on disk to a matrix product on every core.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"zigllama {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is None or name == only:
            _add_command(sub, name, _command_module(name))
    return parser


def _requested_command(argv):
    """The command named on the line (the first word not an option), if it is one of ours."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def _no_blas_thread_pool():
    """For a command that never multiplies matrices: OpenBLAS starts a thread per
    core when numpy is imported, which costs start-up time for nothing. Only before
    numpy is loaded (a fresh process), and never over the user's own setting."""
    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _silence_stdout():
    """After EPIPE: point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _error_line(command, e):
    where = f"zigllama {command}" if command else "zigllama"
    text = str(e).strip().splitlines()
    message = text[0] if text else ""
    from .errors import ZigLlamaError

    if isinstance(e, (ZigLlamaError, LookupError, ValueError, TypeError, OverflowError, UnicodeError)):
        detail = f"{type(e).__name__}: {message}" if message else type(e).__name__
    elif isinstance(e, OSError):
        detail = message or type(e).__name__
    else:
        detail = f"unexpected {type(e).__name__}: {message} (ZIGLLAMA_TRACEBACK=1 shows where)"
    from .commands._terminal import escape

    return f"{where}: error: {escape(detail)}"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _requested_command(argv)
    if command is None and argv[:1] == ["--version"]:  # answered without importing any command
        from . import __version__

        print(f"zigllama {__version__}")
        return 0
    try:
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if not getattr(args, "_run", None):
            parser.print_help()
            return 2
        if not getattr(sys.modules[args._run.__module__], "USES_BLAS", True):
            _no_blas_thread_pool()
        status = int(args._run(args) or 0)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        print(f"zigllama {command}: interrupted" if command else "zigllama: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if os.environ.get("ZIGLLAMA_TRACEBACK"):
            raise
        print(_error_line(command, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
