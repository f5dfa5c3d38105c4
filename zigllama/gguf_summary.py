"""What people look for first in a GGUF model: size, parameters, bits per weight.

``summarize`` gives the parameter count, the bits per weight (overall and per
type), the tensors / elements / bytes of each ggml type, the bytes of metadata
against the bytes of tensor data, and the ``general.file_type`` by its llama.cpp
name (``llama_ftype``: Q4_K_M, ...).
"""

__all__ = ["FILE_TYPE_NAMES", "file_type_name", "summarize", "bits_per_weight"]

# llama.cpp's enum llama_ftype (general.file_type) -> its llama-quantize name
FILE_TYPE_NAMES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
    16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
    22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
    28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0",
}
_GUESSED = 1024  # LLAMA_FTYPE_GUESSED: a flag llama.cpp adds when it inferred the type


def file_type_name(value):
    """The name of a general.file_type value ("Q4_K_M"), "unknown (N)" if unknown."""
    if value is None:
        return None
    value = int(value)
    guessed = value & _GUESSED and value != _GUESSED
    name = FILE_TYPE_NAMES.get(value & ~_GUESSED if guessed else value)
    if name is None:
        return f"unknown ({value})"
    return f"{name} (guessed)" if guessed else name


def bits_per_weight(nbytes, n_elements):
    return 8.0 * nbytes / n_elements if n_elements else 0.0


def _string(md, key):
    from ._core.gguf_format import GGUFValueType

    return md[key] if key in md and md.value_type(key) == GGUFValueType.STRING else None


def summarize(reader, tensors=None):
    """The summary of a GGUFReader's file as a dict (over `tensors`, all by default)."""
    tensors = reader.tensors if tensors is None else tensors
    per_type = {}
    for t in tensors:
        e = per_type.setdefault(t.ggml_type.name, {"tensors": 0, "elements": 0, "bytes": 0})
        e["tensors"] += 1
        e["elements"] += t.n_elements
        e["bytes"] += t.nbytes
    for e in per_type.values():
        e["bits_per_weight"] = bits_per_weight(e["bytes"], e["elements"])
    parameters = sum(t.n_elements for t in tensors)
    tensor_bytes = sum(t.nbytes for t in tensors)
    md = reader.metadata
    file_type = md.get("general.file_type")
    if isinstance(file_type, bool) or not hasattr(file_type, "__index__"):
        file_type = None  # absent, or not an integer: nothing to name
    return {
        "architecture": _string(md, "general.architecture"),
        "name": _string(md, "general.name"),
        "file_type": None if file_type is None else int(file_type),
        "file_type_name": file_type_name(file_type),
        "parameters": parameters,
        "tensor_bytes": tensor_bytes,
        "metadata_bytes": reader.data_offset,
        "bits_per_weight": bits_per_weight(tensor_bytes, parameters),
        "types": dict(sorted(per_type.items(), key=lambda kv: -kv[1]["bytes"])),
    }
