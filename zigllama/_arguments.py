"""Checked conversion of arguments at the boundary between Python and C.

Cython's own conversions (a ``size_t`` or typed-object parameter, ``operator.index``,
``np.dtype``) raise bare TypeError/OverflowError/ValueError that name neither the
argument nor the package. Each kind of argument goes through one helper here, so
every refusal is of the package's error family and names the argument and value.
The helpers are for the failing branch or for calls that are not hot: fast paths
test the exact type inline first.
"""
import operator

import numpy as np

from .errors import InvalidArgumentType, InvalidArgumentValue


def _shown(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def integer(value, name):
    """``value`` as a Python int (anything with ``__index__``), or InvalidArgumentType
    naming ``name``. Range checks stay with the caller, which knows the bounds."""
    if type(value) is int:
        return value
    try:
        return operator.index(value)
    except TypeError:
        raise InvalidArgumentType(
            f"{name} must be an integer, got {type(value).__name__} {_shown(value)}") from None


def integer_in_range(value, name, low, high):
    """``integer(value, name)`` within [low, high], else InvalidArgumentValue."""
    n = integer(value, name)
    if not low <= n <= high:
        raise InvalidArgumentValue(f"{name} must be between {low} and {high}, got {_shown(n)}")
    return n


def dtype(value, name="dtype"):
    """``np.dtype(value)``, or InvalidArgumentType naming ``name`` and the value."""
    if isinstance(value, np.dtype):
        return value
    try:
        return np.dtype(value)
    except (TypeError, ValueError, UnicodeError) as exc:
        raise InvalidArgumentType(
            f"{name} {_shown(value)} is not a data type ({type(exc).__name__}: {exc})") from None


def wrong_type(value, name, expected):
    """The error for an object argument that is not ``expected`` (e.g. "a Tensor or None");
    callers test the type inline and build the error here."""
    return InvalidArgumentType(f"{name} must be {expected}, got {type(value).__name__} {_shown(value)}")
