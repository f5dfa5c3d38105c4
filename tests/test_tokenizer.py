"""The SentencePiece tokenizer against cases worked out by hand from llama.cpp's
algorithm (best-scoring merge first, leftmost on ties; byte fallback), and decoding."""
import pytest

from zigllama import Tokenizer, TokenizerError
from zigllama.tokenizer import BYTE, CONTROL, NORMAL, UNKNOWN, USER_DEFINED, StreamDecoder

PIECES = {"\u2581": -10.0, "a": -10.0, "b": -10.0, "c": -10.0, "ab": -5.0, "bc": -3.0, "abc": -1.0,
          "\u2581a": -6.0, "\u2581ab": -2.0, "你": -8.0, "好": -8.0, "你好": -4.0}


def vocab(byte_tokens=True, space_prefix=True, bos=True):
    tokens = ["<unk>", "<s>", "</s>", "<|user|>"]
    types = [UNKNOWN, CONTROL, CONTROL, USER_DEFINED]
    scores = [0.0] * 4
    if byte_tokens:
        tokens += [f"<0x{b:02X}>" for b in range(256)]
        types += [BYTE] * 256
        scores += [0.0] * 256
    for piece, score in PIECES.items():
        tokens.append(piece)
        types.append(NORMAL)
        scores.append(score)
    return Tokenizer({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
                      "tokenizer.ggml.scores": scores, "tokenizer.ggml.token_type": types,
                      "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2,
                      "tokenizer.ggml.unknown_token_id": 0, "tokenizer.ggml.add_bos_token": bos,
                      "tokenizer.ggml.add_space_prefix": space_prefix})


@pytest.fixture(scope="module")
def tok():
    return vocab()


def ids(tok, *pieces):
    return [tok.token_to_id[p] for p in pieces]


def byte(tok, b):
    return tok.token_to_id[f"<0x{b:02X}>"]


def test_best_score_merges_first(tok):
    # "▁abc": bc (-3) merges before ab (-5), then abc (-1); "▁abc" is no token.
    assert tok.encode("abc") == [1] + ids(tok, "\u2581", "abc")
    # "▁ab": ab (-5) beats ▁a (-6), then ▁ab (-2).
    assert tok.encode("ab") == [1] + ids(tok, "\u2581ab")


def test_spaces_and_leading_space(tok):
    assert tok.encode("a  b", add_special=False) == ids(tok, "\u2581a", "\u2581", "\u2581", "b")
    assert tok.encode(" ab", add_special=False) == ids(tok, "\u2581", "\u2581ab")


def test_byte_fallback_and_emoji(tok):
    assert tok.encode("é", add_special=False) == ids(tok, "\u2581") + [byte(tok, 0xC3), byte(tok, 0xA9)]
    assert tok.encode("😀", add_special=False) == ids(tok, "\u2581") + [byte(tok, b) for b in "😀".encode()]


def test_cjk_without_space_prefix():
    t = vocab(space_prefix=False)
    assert t.encode("你好") == [1] + ids(t, "你好")
    assert t.encode("你好你") == [1] + ids(t, "你好", "你")


def test_unknown_bytes_without_byte_tokens():
    t = vocab(byte_tokens=False)
    assert t.encode("é", add_special=False) == ids(t, "\u2581") + [0, 0]


def test_bos_and_special_tokens(tok):
    assert tok.encode("", add_special=True) == [1]
    assert vocab(bos=False).encode("ab") == ids(tok, "\u2581ab")
    # User-defined tokens are always split out; control tokens only when asked.
    assert tok.encode("ab<|user|>ab", add_special=False) == ids(tok, "\u2581ab", "<|user|>", "\u2581ab")
    assert tok.encode("</s>", add_special=False, parse_special=True) == [2]
    assert 2 not in tok.encode("</s>", add_special=False)


@pytest.mark.parametrize("text", ["abc", "a  b", " ab", "é", "😀 and 你好"])
def test_decode_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_end_of_turn_markers_are_control_tokens():
    # llama.cpp makes them control tokens whatever their type: text never matches them.
    tokens = ["<unk>", "<s>", "</s>", "<end_of_turn>", "\u2581", "<", ">"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [UNKNOWN, CONTROL, CONTROL, USER_DEFINED, NORMAL, NORMAL, NORMAL] + [BYTE] * 256
    t = Tokenizer({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
                   "tokenizer.ggml.token_type": types, "tokenizer.ggml.add_space_prefix": False})
    assert 3 not in t.encode("<end_of_turn>")
    assert t.encode("<end_of_turn>", add_special=False, parse_special=True) == [3]


def test_text_after_a_special_token_gets_a_space_prefix(tok):
    # As llama.cpp: each plain-text fragment after a token is prefixed with a space.
    assert tok.encode("<|user|>ab", add_special=False) == ids(tok, "<|user|>", "\u2581ab")
    assert tok.decode(tok.encode("ab<|user|>c")) == "ab<|user|> c"


def test_stream_decoder_holds_incomplete_characters(tok):
    ids_ = tok.encode("😀é", add_special=False)
    s = StreamDecoder(tok)
    parts = [s.push(i) for i in ids_]
    assert parts[1] == ""  # the emoji's first byte alone is not yet a character
    assert "".join(parts) + s.flush() == "😀é"


def test_bpe_vocabulary_decodes_but_does_not_encode():
    tokens = ["Hello", "\u0120world", "!"]
    t = Tokenizer({"tokenizer.ggml.model": "gpt2", "tokenizer.ggml.tokens": tokens})
    assert t.decode([0, 1, 2]) == "Hello world!"
    with pytest.raises(TokenizerError, match="token ids"):
        t.encode("Hello")


def test_malformed_vocabulary():
    with pytest.raises(TokenizerError):
        Tokenizer({"tokenizer.ggml.model": "llama"})
    with pytest.raises(TokenizerError):
        Tokenizer({"tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": ["a", "b"],
                   "tokenizer.ggml.scores": [0.0]})
