"""Tokenizers from a GGUF file's own vocabulary, as llama.cpp reads them.

``tokenizer.ggml.model == "llama"`` (SentencePiece vocabularies: llama-2, mistral,
gemma, gemma2, gemma3) encodes and decodes as llama.cpp's SPM tokenizer does:
special and user-defined tokens are split out of the text first (longest first),
each piece of plain text gets a space prefix when ``add_space_prefix`` says so and
the previous fragment was a token, spaces become U+2581, the text is split into
UTF-8 characters and adjacent symbols are merged pairwise, the best-scoring merge
that forms a vocabulary token first (ties: leftmost); symbols that are no token are
split back along their merges, and pieces that were never tokens fall back to byte
tokens ``<0xXX>``. BOS is prepended when ``add_bos_token`` (default true) says so.

Other vocabularies (``gpt2`` byte-level BPE and the rest) decode; encoding them
needs their pre-tokenizer regexes, which this module does not have: ``encode``
raises ``TokenizerError`` saying to pass token ids instead.
"""
import heapq

import numpy as np

from .errors import InvalidToken, TokenizerError

# llama.cpp's token types (tokenizer.ggml.token_type).
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_SPACE = "\u2581"
# End-of-turn and fill-in-the-middle markers that llama.cpp treats as control tokens
# whatever type the file gives them (so plain text never matches them).
_FORCED_CONTROL = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<EOT>", "_<EOT>",
                   "<|eom_id|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>",
                   "<|repo_name|>", "<|file_sep|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>"}


def _utf8_len(first_byte):
    # Lead byte -> sequence length, as llama.cpp's unicode_len_utf8 (continuation bytes count 1).
    return (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4)[first_byte >> 4]


def _gpt2_byte_decoder():
    """GPT-2's byte <-> printable-character table, reversed."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class Tokenizer:
    """Encode text to token ids and decode ids to text with a model's vocabulary."""

    def __init__(self, metadata):
        def get(key, default=None):
            return metadata[key] if key in metadata else default

        self.model = str(get("tokenizer.ggml.model", ""))
        tokens = get("tokenizer.ggml.tokens")
        if tokens is None:
            raise TokenizerError("the file has no tokenizer.ggml.tokens")
        self.tokens = list(tokens.tolist() if hasattr(tokens, "tolist") else tokens)
        n = len(self.tokens)
        scores = get("tokenizer.ggml.scores")
        self.scores = np.asarray(scores, dtype=np.float32) if scores is not None else np.zeros(n, np.float32)
        types = get("tokenizer.ggml.token_type")
        self.types = np.array(types, dtype=np.int32) if types is not None else np.full(n, NORMAL, np.int32)
        if self.scores.size != n or self.types.size != n:
            raise TokenizerError(f"vocabulary of {n} tokens with {self.scores.size} scores and {self.types.size} types")
        for i, t in enumerate(self.tokens):
            if t in _FORCED_CONTROL and self.types[i] != CONTROL:
                self.types[i] = CONTROL
        self.token_to_id = {}
        for i, t in enumerate(self.tokens):
            self.token_to_id.setdefault(t, i)
        spm = self.model == "llama"
        self.bos_id = self._special(get("tokenizer.ggml.bos_token_id"), 1 if spm else None)
        self.eos_id = self._special(get("tokenizer.ggml.eos_token_id"), 2 if spm else None)
        self.unk_id = self._special(get("tokenizer.ggml.unknown_token_id"), 0 if spm else None)
        self.add_bos = bool(get("tokenizer.ggml.add_bos_token", spm))
        self.add_eos = bool(get("tokenizer.ggml.add_eos_token", False))
        self.add_space_prefix = bool(get("tokenizer.ggml.add_space_prefix", spm))
        # Tokens matched in the text before the merges, longest first.
        self._specials = sorted((i for i in range(n) if self.types[i] in (CONTROL, USER_DEFINED, UNKNOWN)
                                 and self.tokens[i]), key=lambda i: -len(self.tokens[i]))
        self._byte_decoder = None if spm else _gpt2_byte_decoder()

    def _special(self, value, default):
        v = default if value is None else int(value)
        return v if v is not None and 0 <= v < len(self.tokens) else None

    @classmethod
    def from_file(cls, path):
        from . import GGUFReader

        with GGUFReader(path) as r:
            md = {k: r.metadata[k] for k in r.metadata.keys() if k.startswith("tokenizer.ggml.")}
            md = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in md.items()}
        return cls(md)

    def __len__(self):
        return len(self.tokens)

    # ---- encoding ----------------------------------------------------------------------

    def encode(self, text, add_special=True, parse_special=False):
        """Token ids of ``text``; BOS first when the vocabulary asks for it and
        ``add_special``. Control tokens written in the text are matched only with
        ``parse_special`` (user-defined ones always), as llama.cpp does."""
        if self.model != "llama":
            raise TokenizerError(f"encoding with a {self.model!r} vocabulary is not supported: "
                                 "pass token ids instead (--tokens 1,2,3)")
        out = []
        if add_special and self.add_bos and self.bos_id is not None:
            out.append(self.bos_id)
        prev_special = True
        for frag in self._partition(text, parse_special):
            if isinstance(frag, int):
                out.append(frag)
                prev_special = True
                continue
            if self.add_space_prefix and prev_special:
                frag = " " + frag
            self._spm(frag.replace(" ", _SPACE), out)
            prev_special = False
        if add_special and self.add_eos and self.eos_id is not None:
            out.append(self.eos_id)
        return out

    def _partition(self, text, parse_special):
        """Text split into plain strings and ids of the special tokens found in it."""
        frags = [text] if text else []
        for tid in self._specials:
            if not parse_special and self.types[tid] in (CONTROL, UNKNOWN):
                continue
            piece = self.tokens[tid]
            new = []
            for f in frags:
                if isinstance(f, int) or piece not in f:
                    new.append(f)
                    continue
                parts = f.split(piece)
                for j, part in enumerate(parts):
                    if j:
                        new.append(tid)
                    if part:
                        new.append(part)
            frags = new
        return frags

    def _spm(self, text, out):
        data = text.encode("utf-8")
        # Symbols: [start, length, prev, next] over the bytes, one per UTF-8 character.
        starts, lens = [], []
        off = 0
        while off < len(data):
            n = min(_utf8_len(data[off]), len(data) - off)
            starts.append(off)
            lens.append(n)
            off += n
        count = len(starts)
        if not count:
            return
        prev = list(range(-1, count - 1))
        nxt = list(range(1, count)) + [-1]
        heap = []
        rev_merge = {}
        lookup = self.token_to_id
        n_vocab = len(self.tokens)

        def add_bigram(left, right):
            if left == -1 or right == -1:
                return
            piece = data[starts[left]:starts[left] + lens[left] + lens[right]]
            tid = lookup.get(piece.decode("utf-8", "surrogateescape"))
            if tid is None or tid >= n_vocab:
                return
            # Highest score first; on a tie the leftmost pair.
            heapq.heappush(heap, (-float(self.scores[tid]), left, right, len(piece)))
            rev_merge[piece] = (left, right)

        for i in range(1, count):
            add_bigram(i - 1, i)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            if lens[left] == 0 or lens[right] == 0 or lens[left] + lens[right] != size:
                continue
            lens[left] += lens[right]
            lens[right] = 0
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            add_bigram(prev[left], left)
            add_bigram(left, nxt[left])

        def resegment(i):
            piece = data[starts[i]:starts[i] + lens[i]]
            tid = lookup.get(piece.decode("utf-8", "surrogateescape"))
            if tid is not None:
                out.append(tid)
                return
            pair = rev_merge.get(piece)
            if pair is None:
                for b in piece:
                    out.append(self._byte_token(b))
                return
            resegment(pair[0])
            resegment(pair[1])

        i = 0
        while i != -1:
            resegment(i)
            i = nxt[i]

    def _byte_token(self, b):
        tid = self.token_to_id.get(f"<0x{b:02X}>")
        if tid is None and b < 0x80:
            tid = self.token_to_id.get(chr(b))
        if tid is None:
            if self.unk_id is None:
                raise TokenizerError(f"byte 0x{b:02X} has no token and the vocabulary has no unknown token")
            tid = self.unk_id
        return tid

    # ---- decoding ----------------------------------------------------------------------

    def piece(self, tid, special=False):
        """The bytes a token stands for (control tokens: nothing unless ``special``)."""
        if not 0 <= tid < len(self.tokens):
            raise InvalidToken(f"token id {tid} is outside the vocabulary of {len(self.tokens)}")
        text, kind = self.tokens[tid], int(self.types[tid])
        if kind == CONTROL:
            return text.encode("utf-8") if special else b""
        if kind == UNKNOWN:
            return "\u2585".encode("utf-8")
        if kind == USER_DEFINED:
            return text.encode("utf-8")
        if self._byte_decoder is None:   # SPM
            if kind == BYTE and len(text) == 6 and text.startswith("<0x") and text.endswith(">"):
                return bytes([int(text[3:5], 16)])
            return text.replace(_SPACE, " ").encode("utf-8")
        try:
            return bytes(self._byte_decoder[c] for c in text)
        except KeyError:
            return text.encode("utf-8")

    def decode(self, ids, special=False):
        """Text of ``ids``; the space prefix that encoding added is taken off again."""
        ids = [int(i) for i in ids]
        data = b"".join(self.piece(i, special) for i in ids)
        text = data.decode("utf-8", "replace")
        if self.add_space_prefix and self._byte_decoder is None and text.startswith(" "):
            text = text[1:]
        return text


class StreamDecoder:
    """Text as tokens arrive, holding back bytes of a UTF-8 character not yet complete."""

    def __init__(self, tokenizer, first=True):
        self.tok = tokenizer
        self.pending = b""
        self.first = first

    def push(self, tid):
        data = self.pending + self.tok.piece(tid)
        cut = len(data)
        # Keep back an incomplete UTF-8 sequence at the end.
        for back in range(1, min(4, len(data)) + 1):
            b = data[-back]
            if b & 0xC0 == 0x80:
                continue
            if b >= 0xC0 and _utf8_len(b) > back:
                cut = len(data) - back
            break
        self.pending = data[cut:]
        text = data[:cut].decode("utf-8", "replace")
        if self.first and text:
            if self.tok.add_space_prefix and self.tok._byte_decoder is None and text.startswith(" "):
                text = text[1:]
            self.first = False
        return text

    def flush(self):
        text = self.pending.decode("utf-8", "replace")
        self.pending = b""
        return text
