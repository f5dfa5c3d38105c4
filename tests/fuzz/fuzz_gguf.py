"""Coverage-guided fuzzing of the GGUF reader (atheris, libFuzzer's engine).

Every input is opened as a GGUF file, every metadata value and tensor is read and
the file validated: a GGUFError is the expected answer to a malformed file, and
anything else (another exception, a crash, a leak past -rss_limit_mb, a timeout)
is a finding. The seed corpus is the hostile suite's base file (both byte orders)
and a file of every value type.

A short run (what CI does, through tests/test_gguf_fuzz.py):

    python tests/fuzz/fuzz_gguf.py -runs=20000 -rss_limit_mb=1024

A long run, keeping the corpus it grows:

    mkdir -p fuzz-corpus
    python tests/fuzz/fuzz_gguf.py fuzz-corpus -max_total_time=3600 -rss_limit_mb=1024 -timeout=5 -jobs=2

For coverage of the C parser itself (not only the Python around it), build the
extension with clang and libFuzzer's instrumentation first:

    CC=clang CFLAGS="-fsanitize=fuzzer-no-link,address" python setup.py build_ext --inplace
    LD_PRELOAD=$(python -c "import atheris; print(atheris.path())")/asan_with_fuzzer.so \
        python tests/fuzz/fuzz_gguf.py fuzz-corpus -max_total_time=3600
"""
import os
import random
import struct
import sys
import tempfile

import atheris

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np

with atheris.instrument_imports(include=["zigllama"]):
    from zigllama import GGUFError, GGUFReader

from gguf_hostile_cases import ARR, BOOL, STR, U8, U32, base_file, build  # noqa: E402


def _touch(value):
    if isinstance(value, np.ndarray):
        value.tobytes()
    elif isinstance(value, (list, tuple)) or hasattr(value, "__len__") and not isinstance(value, str):
        for v in value:
            _touch(v)


@atheris.instrument_func
def _signal(outcome, field):
    """Python branches for what the C parser did, so libFuzzer, which cannot see
    into an uninstrumented extension, keeps inputs that reach new rules."""
    if outcome == "GGUFTruncated":
        kind = 1
    elif outcome == "GGUFLimitExceeded":
        kind = 2
    elif outcome == "GGUFLayoutError":
        kind = 3
    elif outcome == "GGUFInvalidValue":
        kind = 4
    elif outcome == "GGUFUnknownType":
        kind = 5
    elif outcome == "GGUFDuplicate":
        kind = 6
    elif outcome == "valid":
        kind = 7
    else:
        kind = 8
    if field.startswith("header"):
        return kind, 1
    if field.startswith("kv"):
        if ".key" in field:
            return kind, 2
        if ".array" in field:
            return kind, 3
        if "[" in field.split("]", 1)[1]:
            return kind, 4
        return kind, 5
    if field.startswith("tensor"):
        if ".ne" in field:
            return kind, 6
        if ".offset" in field:
            return kind, 7
        if ".name" in field:
            return kind, 8
        return kind, 9
    return kind, 10


def TestOneInput(data):
    try:
        with GGUFReader(data) as r:
            for key in r.metadata:
                _touch(r.metadata[key])
                r.metadata.value_type(key)
            for info in r.tensors:
                np.asarray(r.tensor(info.name)).tobytes()
            r.validate()
        _signal("valid", "")
    except GGUFError as e:
        # Every malformed-file error names its place.
        assert " at byte " in str(e), str(e)
        _signal(type(e).__name__, e.field)


_SEEDS = []
_INTERESTING = (0, 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1)


def CustomMutator(data, max_size, seed):
    """libFuzzer's byte mutations, plus GGUF-aware ones: start from a seed file when
    the input is too short to be one, and overwrite a u32/u64 with a boundary value."""
    rnd = random.Random(seed)
    if len(data) < 24 or rnd.random() < 0.05:
        data = rnd.choice(_SEEDS)
    if rnd.random() < 0.5:
        b = bytearray(data)
        width = rnd.choice((4, 8))
        pos = rnd.randrange(max(1, len(b) - width))
        b[pos:pos + width] = struct.pack("<Q" if width == 8 else "<I",
                                         rnd.choice(_INTERESTING) & (2 ** (8 * width) - 1))
        return bytes(b[:max_size])
    return atheris.Mutate(data, max_size)


def seeds():
    return [base_file("<")[0], base_file(">")[0],
            build([("s", STR, "x"), ("b", BOOL, 1), ("a", ARR, (ARR, [(U8, [1]), (STR, ["y"])])),
                   ("general.alignment", U32, 32)], [("t", [32], 8, 0, 34)])[0]]


def seed_corpus(directory):
    for i, s in enumerate(seeds()):
        with open(os.path.join(directory, f"seed{i}.gguf"), "wb") as f:
            f.write(s)


def main(argv):
    _SEEDS.extend(seeds())
    corpus = [a for a in argv[1:] if not a.startswith("-")]
    if corpus:
        os.makedirs(corpus[0], exist_ok=True)
        if not os.listdir(corpus[0]):
            seed_corpus(corpus[0])
        atheris.Setup(argv, TestOneInput, custom_mutator=CustomMutator)
        atheris.Fuzz()
    with tempfile.TemporaryDirectory() as d:
        seed_corpus(d)
        atheris.Setup(argv + [d], TestOneInput, custom_mutator=CustomMutator)
        atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
