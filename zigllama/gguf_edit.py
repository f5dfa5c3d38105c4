"""Editing a GGUF file's metadata: one value in place, or a copy with keys changed.

``set_metadata`` changes one key of a file: in place when the new value takes
exactly the bytes of the old one (any number or bool, a string of the same byte
length; what ``gguf-set-metadata`` does), otherwise by rewriting the file beside
itself and renaming it over. ``parse_value`` turns command-line text into a value
of a GGUF type, and ``special_token_keys`` / ``token_id`` are the token options of
``gguf-new-metadata``.
"""
import json
import os

from .errors import GGUFError, GGUFInvalidValue, GGUFMissingKey
from ._core.gguf_format import GGUFReader, GGUFValueType

__all__ = ["parse_value", "parse_type", "set_metadata", "SPECIAL_TOKENS", "token_id",
           "CHAT_TEMPLATE"]

CHAT_TEMPLATE = "tokenizer.chat_template"

# the --special-token names of gguf-new-metadata -> their key
SPECIAL_TOKENS = {
    name: f"tokenizer.ggml.{name}_token_id"
    for name in ("bos", "eos", "eot", "eom", "unknown", "seperator", "padding", "mask",
                 "fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep",
                 "prefix", "suffix", "middle")
}

_INTEGERS = {
    GGUFValueType.UINT8, GGUFValueType.INT8, GGUFValueType.UINT16, GGUFValueType.INT16,
    GGUFValueType.UINT32, GGUFValueType.INT32, GGUFValueType.UINT64, GGUFValueType.INT64,
}
_FLOATS = {GGUFValueType.FLOAT32, GGUFValueType.FLOAT64}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_type(name):
    """A GGUF value type by its name ('uint32', 'string', 'f32' is not accepted)."""
    try:
        return GGUFValueType[str(name).upper()]
    except KeyError:
        names = ", ".join(t.name.lower() for t in GGUFValueType)
        raise GGUFInvalidValue(f"unknown value type {name!r}; one of {names}") from None


def parse_value(text, value_type, element_type=None, where="value"):
    """Command-line `text` as a value of `value_type` (an array is a JSON list)."""
    t = GGUFValueType(value_type)
    if t == GGUFValueType.STRING:
        return text
    if t == GGUFValueType.BOOL:
        low = text.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise GGUFInvalidValue(f"{where}: {text!r} is not a bool (true/false, 1/0)")
    if t in _INTEGERS:
        try:
            return int(text.strip(), 0)
        except ValueError:
            raise GGUFInvalidValue(f"{where}: {text!r} is not an integer") from None
    if t in _FLOATS:
        try:
            return float(text)
        except ValueError:
            raise GGUFInvalidValue(f"{where}: {text!r} is not a number") from None
    try:
        items = json.loads(text)
    except ValueError:
        items = None
    if not isinstance(items, list):
        raise GGUFInvalidValue(f"{where}: an array value is a JSON list, not {text!r}")
    if element_type is None:
        return items
    et = GGUFValueType(element_type)
    if et == GGUFValueType.ARRAY:
        raise GGUFInvalidValue(f"{where}: arrays of arrays cannot be set from the command line")
    return [parse_value(x if isinstance(x, str) else json.dumps(x), et, where=f"{where}[{i}]")
            for i, x in enumerate(items)]


def token_id(reader, text):
    """The id of the first token spelled `text` in the file's vocabulary."""
    tokens = reader.metadata.get("tokenizer.ggml.tokens")
    if tokens is None:
        raise GGUFMissingKey(f"{reader.path}: no tokenizer.ggml.tokens to look {text!r} up in")
    for i, tok in enumerate(tokens):
        if tok == text:
            return i
    raise GGUFError(f"{reader.path}: no token {text!r} in the vocabulary")


def _value_offset(md, key):
    """File offset of a key's value (past the key string and the type field)."""
    return md.offset(key) + 8 + len(key.encode("utf-8")) + 4


def set_metadata(path, key, text, value_type=None, *, dry_run=False):
    """Set `key` of the GGUF file `path` to `text` (parsed as the key's type, or as
    `value_type` for a new key or a change of type; a new key without a type is a
    string). Returns (old value or None, new value, "in place" | "rewritten" |
    "unchanged")."""
    from .gguf_writer import GGUFValue, _Encoder, rewrite_metadata
    from .commands._files import atomic_output

    path = os.fspath(path)
    with GGUFReader(path) as r:
        md = r.metadata
        exists = key in md
        old_type = md.value_type(key) if exists else None
        t = parse_type(value_type) if value_type is not None else (GGUFValueType.STRING if old_type is None else old_type)
        et = md.element_type(key) if exists and t == old_type else None
        value = parse_value(text, t, et, where=f"key {key!r}")
        old = md[key] if exists else None
        if old is not None and hasattr(old, "tolist"):
            old = old.tolist()
        enc = _Encoder(r.byte_order)
        new_raw = enc.u32(t) + enc.value(t, value, et, f"key {key!r}")
        old_raw = bytes(md.raw_value(key)) if exists else None
        offset = _value_offset(md, key) if exists else None
    if old_raw == new_raw:
        return old, value, "unchanged"
    in_place = old_raw is not None and len(old_raw) == len(new_raw)
    if dry_run:
        return old, value, "in place" if in_place else "rewritten"
    if in_place:
        with open(path, "r+b") as f:
            f.seek(offset - 4)  # the type field too: --type may change it (same width)
            f.write(new_raw)
        return old, value, "in place"
    mode = os.stat(path).st_mode
    with atomic_output(path, force=True) as tmp:
        rewrite_metadata(path, tmp, {key: GGUFValue(value, t, et)})
        os.chmod(tmp, mode)
    return old, value, "rewritten"
