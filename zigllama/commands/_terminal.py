"""Showing untrusted strings (keys, tensor names, values read from a file) on a terminal.

A GGUF file is data from anywhere: a key holding ESC sequences could set the window
title, clear the screen or rewrite the lines above it, and so forge what a command
shows. Every human-readable printer passes such strings through ``escape`` first;
JSON output is escaped by ``json.dumps`` already.
"""

__all__ = ["escape"]


def _escaped_char(ch):
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text):
    """`text` with every non-printable character (C0 and C1 controls, DEL, bidi
    overrides, line and paragraph separators, ...) shown as a Python-style escape;
    a backslash is doubled so an escape in the output is never ambiguous."""
    if not isinstance(text, str):
        text = str(text)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(ch if ch.isprintable() and ch != "\\" else ("\\\\" if ch == "\\" else _escaped_char(ch))
                   for ch in text)
