"""Writing a command's output files safely.

Every command that writes a file refuses to write over one of its inputs, refuses
to replace an existing file unless given ``--force``, and writes to a temporary
file beside the target, renamed over it only once complete: an interrupted or
failed run never leaves a half-written model behind.
"""
import contextlib
import os
import tempfile

from ..errors import ZigLlamaError

__all__ = ["OutputExists", "check_output", "atomic_output"]


class OutputExists(ZigLlamaError, FileExistsError):
    """The output path already exists (without --force), or is one of the inputs."""


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_output(path, inputs=(), force=False):
    """Raise OutputExists if `path` is one of `inputs` or exists and not `force`."""
    for src in inputs:
        if _same_file(path, src):
            raise OutputExists(f"{path}: is an input of this command; write to another path")
    if os.path.lexists(path) and not force:
        raise OutputExists(f"{path}: already exists (use --force to replace it)")


@contextlib.contextmanager
def atomic_output(path, inputs=(), force=False):
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on
    any error (or interruption) removed."""
    check_output(path, inputs, force)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=directory)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is not what a plain open() gives

        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
