"""The public C namespace: every name a shipped header declares and every global
symbol an extension module exports carries the zl_/ZL_ prefix (a program that also
links ggml's gguf.h, or any other library, must not collide with zigllama), every
header has the same include-guard scheme and an extern "C" block, and a C++
translation unit including all of them compiles."""
import glob
import os
import re
import shutil
import subprocess

import pytest

import zigllama

INCLUDE = os.path.join(zigllama.get_include(), "zigllama")
HEADERS = sorted(glob.glob(os.path.join(INCLUDE, "*.h")))
PREFIXED = re.compile(r"^(zl_|ZL_|ZIGLLAMA_)")
# Words that look like calls to the scan below but are C keywords or attributes.
NOT_NAMES = {"sizeof", "if", "while", "for", "switch", "return", "defined", "__attribute__", "target",
             "aligned", "_Alignof", "alignof", "__builtin_expect", "__has_include"}


def _strip(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r"\\\n", " ", text)


def declared_names(text):
    """(kind, name) of every macro, function, typedef, tag and enumerator a header
    declares at file scope."""
    text = _strip(text)
    names = {("macro", m) for m in re.findall(r"^\s*#\s*define\s+(\w+)", text, re.M)}
    body = re.sub(r"^\s*#[^\n]*", " ", text, flags=re.M)
    body = body.replace('extern "C" {', " ")  # (only inside #ifdef __cplusplus, already dropped)
    top, depth = [], 0
    for ch in body:
        if ch == "{":
            depth += 1
            top.append(" ")
        elif ch == "}":
            depth -= 1
        elif depth == 0:
            top.append(ch)
    toplevel = "".join(top)
    names |= {("tag", m) for m in re.findall(r"\b(?:struct|enum|union)\s+(\w+)", body)}
    # a function: a name followed by "(" at file scope, not a function-pointer typedef's return type
    for m in re.finditer(r"(?<![(*\w])(\w+)\s*\(", toplevel):
        if m.group(1) not in NOT_NAMES and not toplevel[m.end():].lstrip().startswith("*"):
            names.add(("function", m.group(1)))
    names |= {("typedef", m) for m in re.findall(r"typedef\b[^;]*?\b(\w+)\s*(?:\)\s*\(|;|\[)", toplevel)}
    for block in re.findall(r"\benum\s*\w*\s*\{([^}]*)\}", body):
        for item in block.split(","):
            item = item.split("=")[0].strip()
            if item:
                names.add(("enumerator", item))
    return names


def test_the_headers_are_found():
    names = {os.path.basename(h) for h in HEADERS}
    assert {"zl_gguf.h", "zl_tensor.h", "zl_blas.h", "zl_threading.h", "zl_quants.h"} <= names


def test_the_scan_sees_unprefixed_names():
    # The check below must be able to fail: ggml's gguf.h style is caught.
    sample = """
    #define GGUF_DEFAULT_ALIGNMENT 32
    typedef enum { GGUF_TYPE_UINT8 = 0 } gguf_type;
    struct gguf_context;
    void gguf_free(struct gguf_context *ctx);
    typedef int (*zl_ok_fn)(void *ctx);
    static inline int zl_fine(void) { return helper(1); }
    """
    bad = {n for _, n in declared_names(sample) if not PREFIXED.match(n)}
    assert bad == {"GGUF_DEFAULT_ALIGNMENT", "GGUF_TYPE_UINT8", "gguf_type", "gguf_context", "gguf_free"}


@pytest.mark.parametrize("header", HEADERS, ids=os.path.basename)
def test_header_declares_only_prefixed_names(header):
    with open(header) as f:
        names = declared_names(f.read())
    bad = sorted(f"{kind} {name}" for kind, name in names if not PREFIXED.match(name))
    assert not bad, f"{os.path.basename(header)} declares names without the zl_/ZL_ prefix: {bad}"


@pytest.mark.parametrize("header", HEADERS, ids=os.path.basename)
def test_header_guard_and_extern_c(header):
    with open(header) as f:
        text = f.read()
    guard = "ZIGLLAMA_" + os.path.splitext(os.path.basename(header))[0].upper() + "_H"
    code = _strip(text)
    assert re.search(rf"^#ifndef {guard}\s*\n#define {guard}\s*$", code, re.M), f"guard {guard}"
    assert re.search(r'#ifdef __cplusplus\s*\nextern "C" \{\s*\n', code), "no extern \"C\" block"
    assert code.rstrip().endswith("#endif"), "the guard's #endif must close the file"


def _extension_modules():
    core = os.path.join(os.path.dirname(zigllama.__file__), "_core")
    return sorted(glob.glob(os.path.join(core, "*.so")))


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils' nm")
def test_extension_modules_export_only_prefixed_symbols():
    modules = _extension_modules()
    assert modules, "no built extension modules found"
    bad = {}
    for so in modules:
        out = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) != 3 or parts[1] not in "TDBRVWiu":
                continue
            name = parts[2].split("@")[0]
            if not (name.startswith(("zl_", "PyInit_")) or name in ("_init", "_fini")):
                bad.setdefault(os.path.basename(so), []).append(name)
    assert not bad, f"global symbols without the zl_ prefix: {bad}"


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
@pytest.mark.parametrize("std", ["c++11", "c++17"])
def test_every_header_compiles_as_cplusplus(tmp_path, std):
    unit = tmp_path / "all_headers.cpp"
    unit.write_text("".join(f'#include "zigllama/{os.path.basename(h)}"\n' for h in HEADERS)
                    + "int main() { zl_tensor_view v; (void)v; return zl_dtype_itemsize(ZL_F32) == 4 ? 0 : 1; }\n")
    result = subprocess.run(["g++", f"-std={std}", "-fsyntax-only", "-Wall", "-Werror", "-I", zigllama.get_include(),
                             str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
