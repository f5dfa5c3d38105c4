"""The small kernels of a transformer forward pass that are not matrix products.

``zigllama.model`` calls these between its matrix products: RMSNorm, rotary
position embedding (normal and neox pairing) from precomputed cos/sin tables,
the masked (causal, optionally sliding-window), scaled, optionally soft-capped
softmax of attention scores, and the SwiGLU/GeGLU gate. Each runs without the
GIL; the row-wise ones split rows over ``threads`` OpenMP threads (one thread
for small inputs, where starting a team costs more than it saves).
"""
from cython.parallel cimport prange
from libc.math cimport expf, sqrt, tanhf, INFINITY

# Below this many elements a kernel runs on the calling thread alone: an OpenMP
# team's start and barrier cost tens of microseconds, far more on a busy machine.
cdef enum:
    PARALLEL_MIN = 1 << 17


cdef inline int _team(Py_ssize_t work, int threads) noexcept nogil:
    if threads < 1 or work < PARALLEL_MIN:
        return 1
    return threads


def rms_norm(const float[:, ::1] x, const float[::1] weight, float eps, float[:, ::1] out, int threads=1):
    """out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, row by row (out may be x)."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1], r, i
    cdef double ss
    cdef float scale
    if weight.shape[0] != n or out.shape[0] != rows or out.shape[1] != n:
        raise ValueError(f"rms_norm: x {x.shape[0]}x{n}, weight {weight.shape[0]}, out {out.shape[0]}x{out.shape[1]}")
    with nogil:
        for r in prange(rows, num_threads=_team(rows * n, threads), schedule="static"):
            ss = 0.0
            for i in range(n):
                ss = ss + <double>x[r, i] * x[r, i]
            scale = <float>(1.0 / sqrt(ss / n + eps))
            for i in range(n):
                out[r, i] = x[r, i] * scale * weight[i]


def rope(float[:, :, ::1] x, const float[:, ::1] cos_table, const float[:, ::1] sin_table,
         Py_ssize_t start_pos, int n_dims, bint neox):
    """Rotate x (seq, heads, head_dim) in place for positions start_pos.. start_pos+seq-1.

    Tables are (n_ctx, n_dims / 2): cos and sin of position * theta_i. Normal RoPE
    rotates adjacent pairs (2i, 2i+1); neox pairs i with i + n_dims/2. Elements past
    n_dims are left as they are.
    """
    cdef Py_ssize_t seq = x.shape[0], heads = x.shape[1], hd = x.shape[2], s, h, i, pos
    cdef Py_ssize_t half = n_dims // 2
    cdef float c, sn, a, b
    if n_dims > hd or n_dims % 2 or cos_table.shape[1] < half or sin_table.shape[1] < half:
        raise ValueError(f"rope: n_dims {n_dims} does not fit head_dim {hd} or the tables")
    if start_pos < 0 or start_pos + seq > cos_table.shape[0] or start_pos + seq > sin_table.shape[0]:
        raise ValueError(f"rope: positions {start_pos}..{start_pos + seq - 1} outside the tables of {cos_table.shape[0]}")
    with nogil:
        for s in range(seq):
            pos = start_pos + s
            for h in range(heads):
                for i in range(half):
                    c = cos_table[pos, i]
                    sn = sin_table[pos, i]
                    if neox:
                        a = x[s, h, i]
                        b = x[s, h, i + half]
                        x[s, h, i] = a * c - b * sn
                        x[s, h, i + half] = a * sn + b * c
                    else:
                        a = x[s, h, 2 * i]
                        b = x[s, h, 2 * i + 1]
                        x[s, h, 2 * i] = a * c - b * sn
                        x[s, h, 2 * i + 1] = a * sn + b * c


def masked_softmax(float[:, ::1] scores, Py_ssize_t group, Py_ssize_t start_pos, Py_ssize_t window,
                   float scale, float softcap, int threads=1):
    """Attention probabilities in place, from raw scores q . k.

    Row r belongs to the query at position start_pos + r // group (``group`` query
    heads share a key/value head and sit in consecutive rows); column j is the key at
    position j. A key is seen when j <= the query's position and, with a sliding
    window (window > 0), when position - j < window. Seen scores are scaled, then
    soft-capped (softcap * tanh(s / softcap), when softcap > 0), then softmax'd;
    unseen ones become 0.
    """
    cdef Py_ssize_t rows = scores.shape[0], n = scores.shape[1], r, j, qpos, lo, hi
    cdef float m, v, total, inv
    if group < 1 or start_pos < 0:
        raise ValueError(f"masked_softmax: group {group}, start_pos {start_pos}")
    if (rows + group - 1) // group + start_pos > n:
        raise ValueError(f"masked_softmax: {rows} rows from position {start_pos} need {start_pos + rows // group} keys, have {n}")
    with nogil:
        for r in prange(rows, num_threads=_team(rows * n, threads), schedule="static"):
            qpos = start_pos + r // group
            hi = qpos + 1
            lo = 0
            if window > 0 and qpos - window + 1 > 0:
                lo = qpos - window + 1
            m = -INFINITY
            for j in range(lo, hi):
                v = scores[r, j] * scale
                if softcap > 0:
                    v = softcap * tanhf(v / softcap)
                scores[r, j] = v
                if v > m:
                    m = v
            total = 0
            for j in range(lo, hi):
                v = expf(scores[r, j] - m)
                scores[r, j] = v
                total = total + v
            inv = 1.0 / total
            for j in range(lo, hi):
                scores[r, j] = scores[r, j] * inv
            for j in range(0, lo):
                scores[r, j] = 0
            for j in range(hi, n):
                scores[r, j] = 0


def gated_activation(float[:, ::1] gate, const float[:, ::1] up, bint gelu, int threads=1):
    """gate = act(gate) * up in place: SiLU (SwiGLU) or tanh-approximated GELU (GeGLU)."""
    cdef Py_ssize_t rows = gate.shape[0], n = gate.shape[1], r, i
    cdef float g
    if up.shape[0] != rows or up.shape[1] != n:
        raise ValueError(f"gated_activation: gate {rows}x{n}, up {up.shape[0]}x{up.shape[1]}")
    with nogil:
        for r in prange(rows, num_threads=_team(rows * n, threads), schedule="static"):
            for i in range(n):
                g = gate[r, i]
                if gelu:
                    g = 0.5 * g * (1.0 + tanhf(0.7978845608028654 * (g + 0.044715 * g * g * g)))
                else:
                    g = g / (1.0 + expf(-g))
                gate[r, i] = g * up[r, i]


def soft_cap(float[:, ::1] x, float cap):
    """x = cap * tanh(x / cap) in place (gemma2's final logit soft-capping)."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1], r, i
    with nogil:
        for r in range(rows):
            for i in range(n):
                x[r, i] = cap * tanhf(x[r, i] / cap)
