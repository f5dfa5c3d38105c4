"""``zigllama inspect FILE``: a GGUF file's header, metadata and tensors."""
import json

import numpy as np

HELP = "show a GGUF file's header, metadata (long arrays summarised) and tensor table"


def add_arguments(parser):
    parser.add_argument("file", help="a .gguf file")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--max-array", type=int, default=8, metavar="N",
                        help="show at most N elements of each array (default 8)")


def _plain(v):
    """A metadata value as JSON-able Python data."""
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "tolist"):
        return _plain(v.tolist())
    return v


def _value_entry(md, key, max_array):
    t = md.value_type(key)
    v = md[key]
    entry = {"type": t.name.lower()}
    if t.name == "ARRAY":
        n = len(v)
        entry["element_type"] = md.element_type(key).name.lower()
        entry["count"] = n
        entry["head"] = _plain(v[:max_array])
    else:
        entry["value"] = v
    return entry


def describe(reader, max_array=8):
    """The file as a dict (what --json prints)."""
    md = reader.metadata
    return {
        "path": str(reader.path),
        "version": reader.version,
        "byte_order": reader.byte_order,
        "alignment": reader.alignment,
        "data_offset": reader.data_offset,
        "file_size": reader.file_size,
        "metadata": {k: _value_entry(md, k, max_array) for k in md},
        "tensors": [
            {"name": t.name, "type": t.ggml_type.name, "ne": list(t.ne), "shape": list(t.shape),
             "offset": t.offset, "nbytes": t.nbytes}
            for t in reader.tensors
        ],
    }


def _fmt(x):
    return f"{x:.6g}" if isinstance(x, float) else repr(x)


def _show(entry):
    if "value" in entry:
        return _fmt(entry["value"])
    head = ", ".join(_fmt(x) for x in entry["head"])
    more = ", ..." if entry["count"] > len(entry["head"]) else ""
    return f"[{entry['count']} x {entry['element_type']}] [{head}{more}]"


def run(args):
    from .._core.gguf_format import GGUFReader

    with GGUFReader(args.file) as r:
        d = describe(r, args.max_array)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"{d['path']}: GGUF v{d['version']}, {d['byte_order']}-endian, {d['file_size']} bytes")
    print(f"  alignment {d['alignment']}, data at byte {d['data_offset']}, "
          f"{len(d['metadata'])} keys, {len(d['tensors'])} tensors")
    print("\nmetadata:")
    width = max((len(k) for k in d["metadata"]), default=0)
    for k, e in d["metadata"].items():
        shown = _show(e)
        if len(shown) > 160:
            shown = shown[:157] + "..."
        print(f"  {k:<{width}}  {e['type'] if 'value' in e else 'array':<7} {shown}")
    print("\ntensors:")
    if d["tensors"]:
        nw = max(4, max(len(t["name"]) for t in d["tensors"]))
        print(f"  {'name':<{nw}}  {'type':<8} {'ne':<24} {'offset':>14} {'bytes':>14}")
        for t in d["tensors"]:
            ne = "x".join(str(n) for n in t["ne"]) or "scalar"
            print(f"  {t['name']:<{nw}}  {t['type']:<8} {ne:<24} {t['offset']:>14} {t['nbytes']:>14}")
        print(f"  total {sum(t['nbytes'] for t in d['tensors'])} bytes of tensor data")
    return 0
