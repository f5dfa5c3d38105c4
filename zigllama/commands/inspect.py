"""``zigllama inspect FILE``: a GGUF file's summary, header, metadata and tensors."""
import json

from ._terminal import escape

USES_BLAS = False
HELP = ("show a GGUF file's summary (parameters, bits per weight, bytes per type, file type), "
        "header, metadata (long arrays summarised) and tensor table")


def add_arguments(parser):
    parser.add_argument("file", help="a .gguf file")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--max-array", type=int, default=8, metavar="N",
                        help="show at most N elements of each array (default 8)")
    parser.add_argument("--no-tensors", action="store_true", help="leave out the tensor table")
    parser.add_argument("--filter", metavar="PATTERN",
                        help="list only the tensors whose name matches PATTERN (a shell-style pattern "
                             "such as 'blk.0.*', or a plain substring)")


def _plain(v):
    """A metadata value as JSON-able Python data."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "tolist"):
        v = v.tolist()
        return [_plain(x) for x in v] if isinstance(v, list) else v
    return v


def _value_entry(md, key, max_array):
    t = md.value_type(key)
    v = md[key]
    entry = {"type": t.name.lower()}
    if t.name == "ARRAY":
        entry["element_type"] = md.element_type(key).name.lower()
        entry["count"] = len(v)
        entry["head"] = _plain(v[:max(max_array, 0)])
    else:
        entry["value"] = _plain(v)
    return entry


def _matcher(pattern):
    if pattern is None:
        return lambda name: True
    if any(c in pattern for c in "*?["):
        from fnmatch import fnmatchcase
        return lambda name: fnmatchcase(name, pattern)
    return lambda name: pattern in name


def describe(reader, max_array=8, tensors=True, pattern=None):
    """The file as a dict (what --json prints)."""
    from ..gguf_summary import bits_per_weight, summarize

    md = reader.metadata
    d = {
        "path": str(reader.path),
        "version": reader.version,
        "byte_order": reader.byte_order,
        "alignment": reader.alignment,
        "data_offset": reader.data_offset,
        "file_size": reader.file_size,
        "tensor_count": reader.tensor_count,
        "summary": summarize(reader),
        "metadata": {k: _value_entry(md, k, max_array) for k in md},
    }
    if tensors:
        match = _matcher(pattern)
        d["tensors"] = [
            {"name": t.name, "type": t.ggml_type.name, "ne": list(t.ne), "shape": list(t.shape),
             "offset": t.offset, "nbytes": t.nbytes, "bits_per_weight": bits_per_weight(t.nbytes, t.n_elements)}
            for t in reader.tensors if match(t.name)
        ]
    return d


def _fmt(x):
    return f"{x:.6g}" if isinstance(x, float) else repr(x)


def _show(entry):
    if "value" in entry:
        return _fmt(entry["value"])
    head = ", ".join(_fmt(x) for x in entry["head"])
    more = ", ..." if entry["count"] > len(entry["head"]) else ""
    return f"[{entry['count']} x {entry['element_type']}] [{head}{more}]"


def _size(n):
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,} bytes" if unit == "bytes" else f"{n:,.2f} {unit}"
        n /= 1024


def _print_summary(d):
    s = d["summary"]
    arch = escape(s["architecture"]) if s["architecture"] is not None else "?"
    name = f" '{escape(s['name'])}'" if s["name"] else ""
    ftype = s["file_type_name"] or "not stated"
    print(f"{arch}{name}: {s['parameters']:,} parameters, {s['bits_per_weight']:.2f} bits per weight, "
          f"file type {escape(ftype)}")
    print(f"  tensor data {_size(s['tensor_bytes'])}, metadata {_size(s['metadata_bytes'])} "
          f"({100 * s['metadata_bytes'] / max(d['file_size'], 1):.1f}% of the file)")
    print(f"  {'type':<8} {'tensors':>7} {'elements':>15} {'bytes':>15} {'bpw':>6}")
    for t, e in s["types"].items():
        print(f"  {t:<8} {e['tensors']:>7} {e['elements']:>15,} {e['bytes']:>15,} {e['bits_per_weight']:>6.2f}")


def run(args):
    from .._core.gguf_format import GGUFReader

    with GGUFReader(args.file) as r:
        d = describe(r, args.max_array, not args.no_tensors, args.filter)
    if args.json:
        print(json.dumps(d, indent=2))
        return 0
    print(f"{escape(d['path'])}: GGUF v{d['version']}, {d['byte_order']}-endian, {d['file_size']:,} bytes")
    print(f"  alignment {d['alignment']}, data at byte {d['data_offset']}, "
          f"{len(d['metadata'])} keys, {d['tensor_count']} tensors")
    print()
    _print_summary(d)
    print("\nmetadata:")
    keys = {k: escape(k) for k in d["metadata"]}
    width = max((len(k) for k in keys.values()), default=0)
    for k, e in d["metadata"].items():
        shown = escape(_show(e))
        if len(shown) > 160:
            shown = shown[:157] + "..."
        print(f"  {keys[k]:<{width}}  {e['type'] if 'value' in e else 'array':<7} {shown}")
    if "tensors" not in d:
        return 0
    shown_tensors = d["tensors"]
    title = "tensors" if args.filter is None else \
        f"tensors matching {escape(repr(args.filter))}: {len(shown_tensors)} of {d['tensor_count']}"
    print(f"\n{title}:")
    if shown_tensors:
        names = [escape(t["name"]) for t in shown_tensors]
        nw = max(4, max(len(n) for n in names))
        print(f"  {'name':<{nw}}  {'type':<8} {'ne':<24} {'offset':>14} {'bytes':>14} {'bpw':>6}")
        for name, t in zip(names, shown_tensors):
            ne = "x".join(str(n) for n in t["ne"]) or "scalar"
            print(f"  {name:<{nw}}  {t['type']:<8} {ne:<24} {t['offset']:>14} {t['nbytes']:>14} "
                  f"{t['bits_per_weight']:>6.2f}")
        print(f"  total {sum(t['nbytes'] for t in shown_tensors):,} bytes of tensor data")
    return 0
