"""The ggml type table (ids, block sizes, bytes per block) against the gguf package."""
import gguf
import pytest

from zigllama.ggml_types import GGML_TYPE_TRAITS, GGMLType, row_nbytes, tensor_nbytes


def test_ids_and_names_match_gguf_package():
    ours = {t.name: t.value for t in GGMLType}
    theirs = {t.name: t.value for t in gguf.GGMLQuantizationType}
    assert ours == theirs


@pytest.mark.parametrize("t", list(GGMLType))
def test_block_layout_matches_gguf_package(t):
    theirs = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(t.value)]
    if t == GGMLType.Q8_1 and theirs == (32, 40):
        # gguf-py's stale entry (f32 d and s); ggml's block_q8_1 holds two f16: 36 bytes.
        theirs = (32, 36)
    assert GGML_TYPE_TRAITS[t] == theirs
    assert (t.block_size, t.type_size) == GGML_TYPE_TRAITS[t]


def test_seed_table_corrections():
    # The seed numbers IQ1_M 24 and BF16 25 and gives IQ4_NL 256-element blocks.
    assert GGMLType.IQ1_M == 29 and GGMLType.BF16 == 30 and GGMLType.I8 == 24
    assert GGMLType.IQ4_NL.block_size == 32 and GGMLType.Q4_0.type_size == 18


def test_sizes():
    assert row_nbytes(GGMLType.Q4_K, 512) == 288
    assert tensor_nbytes(GGMLType.F16, (3, 5)) == 30
    assert tensor_nbytes(GGMLType.Q8_0, (2, 4, 64)) == 2 * 4 * 68
    with pytest.raises(ValueError):
        row_nbytes(GGMLType.Q8_0, 33)
