"""The steps of a transformer forward pass that are not quantized matrix products,
and the nogil runner that strings a model's layers together.

``zigllama.model`` calls these: RMSNorm (fused with its weight and with the
residual add), rotary position embedding (normal and neox pairing) from
precomputed cos/sin tables, the masked (causal, optionally sliding-window),
scaled, optionally soft-capped softmax of attention scores, and the SwiGLU/GeGLU
gate. Their bodies are C (``src/model_kernels/``) with AVX-512, AVX2 and
portable paths chosen at run time.

It sits outside ``zigllama._core`` as a user of the layer: it cimports the public
``zigllama/*.pxd`` names and includes the shipped headers, as any outside
extension would.

``LayerStack`` runs every block of a model whose matrices are all QuantizedTensor
views: one call per forward pass, without the GIL, calling ``qgemm_on`` through the
BLAS vtable's quantized slot on the pool and the vtable's sgemm for attention, so
that generating a token costs no Python work per layer.
"""
from libc.stdint cimport int64_t, uintptr_t
from libc.string cimport memcpy

from zigllama.blas_integration cimport (
    BlasInterface, ZL_BLAS_ENOMEM, ZL_BLAS_OK, ZL_NO_TRANS, ZL_ROW_MAJOR, ZL_TRANS, single_threaded, zl_blas,
    zl_blas_int, zl_qtensor,
)
from zigllama.qmatmul cimport QuantizedTensor, ZL_QGEMM_EXACT, ZL_QGEMM_FAST, qgemm_on
from zigllama.threading cimport parallel_for_status, pool_ptr, pool_threads, zl_pool

import numpy as np

from zigllama import default_pool, get_blas
from zigllama.errors import ModelError, OutOfMemory


cdef extern from "zl_model_kernels.h" nogil:
    void zl_glu(float *gate, const float *up, int64_t n, int gelu)
    void zl_rms_norm_row(const float *x, const float *w, float eps, float *out, int64_t n)
    void zl_residual_norm_row(float *x, const float *delta, const float *post_w, const float *next_w,
                              float eps, float *out, int64_t n)
    void zl_softmax_row(float *s, int64_t lo, int64_t hi, int64_t n, float scale, float softcap)
    void zl_rope_head(float *x, const float *cos_t, const float *sin_t, int64_t n_dims, int neox)
    void zl_soft_cap(float *x, int64_t n, float cap)
    void zl_attn_scores(const float *q, const float *k, int64_t nk, int64_t hd, float *out)
    void zl_attn_weighted_sum(const float *p, const float *v, int64_t nk, int64_t hd, float *out)
    const char *zl_model_kernels_path()
    int64_t zl_claim_next(int64_t *counter)

cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec *ts)
    enum:
        CLOCK_MONOTONIC

# Below this many elements a kernel runs on the calling thread alone: handing work
# to the pool costs microseconds, more than the work saves.
cdef enum:
    PARALLEL_MIN = 1 << 17


def kernels_path():
    """The SIMD path of these kernels: "avx512", "avx2" or "portable"."""
    return zl_model_kernels_path().decode()


# ---- the row-wise kernels, one call per tensor ---------------------------------------

ctypedef struct glu_job:
    float *gate
    const float *up
    int64_t n
    int64_t chunk
    int gelu


cdef int glu_range(void *ctx, int64_t begin, int64_t end) noexcept nogil:
    cdef glu_job *j = <glu_job *>ctx
    cdef int64_t c, lo, hi
    for c in range(begin, end):
        lo = c * j.chunk
        hi = lo + j.chunk if lo + j.chunk < j.n else j.n
        zl_glu(j.gate + lo, j.up + lo, hi - lo, j.gelu)
    return 0


cdef int glu_on(zl_pool *pool, float *gate, const float *up, int64_t n, int gelu) noexcept nogil:
    """gate = act(gate) * up over n elements, split over the pool when big."""
    cdef glu_job job
    if pool == NULL or n < PARALLEL_MIN:
        zl_glu(gate, up, n, gelu)
        return 0
    job.gate = gate
    job.up = up
    job.n = n
    job.chunk = ((n + 4 * pool_threads(pool) - 1) // (4 * pool_threads(pool)) + 63) // 64 * 64
    job.gelu = gelu
    return parallel_for_status(pool, (n + job.chunk - 1) // job.chunk, 1, glu_range, &job)


cdef zl_pool *_pool_for(int threads):
    return pool_ptr(default_pool()) if threads > 1 else NULL


def rms_norm(const float[:, ::1] x, const float[::1] weight, float eps, float[:, ::1] out, int threads=1):
    """out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * weight, row by row (out may be x)."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1], r
    if weight.shape[0] != n or out.shape[0] != rows or out.shape[1] != n:
        raise ValueError(f"rms_norm: x {x.shape[0]}x{n}, weight {weight.shape[0]}, out {out.shape[0]}x{out.shape[1]}")
    if rows == 0 or n == 0:
        return
    with nogil:
        for r in range(rows):
            zl_rms_norm_row(&x[r, 0], &weight[0], eps, &out[r, 0], n)


def residual_norm(float[:, ::1] x, const float[:, ::1] delta, post_weight, next_weight, float eps,
                  float[:, ::1] out):
    """x += (rms_norm(delta) * post_weight, or delta without one); then, with a
    next_weight, out = rms_norm(x) * next_weight. One pass per row; delta is left as is."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1], r
    cdef const float[::1] pw, nw
    cdef const float *pp = NULL
    cdef const float *np_ = NULL
    if delta.shape[0] != rows or delta.shape[1] != n or out.shape[0] != rows or out.shape[1] != n:
        raise ValueError(f"residual_norm: x {rows}x{n}, delta {delta.shape[0]}x{delta.shape[1]}, "
                         f"out {out.shape[0]}x{out.shape[1]}")
    if post_weight is not None:
        pw = post_weight
        if pw.shape[0] != n:
            raise ValueError(f"residual_norm: post_weight {pw.shape[0]}, rows of {n}")
        pp = &pw[0] if n else NULL
    if next_weight is not None:
        nw = next_weight
        if nw.shape[0] != n:
            raise ValueError(f"residual_norm: next_weight {nw.shape[0]}, rows of {n}")
        np_ = &nw[0] if n else NULL
    if rows == 0 or n == 0:
        return
    with nogil:
        for r in range(rows):
            zl_residual_norm_row(&x[r, 0], &delta[r, 0], pp, np_, eps, &out[r, 0], n)


def rope(float[:, :, ::1] x, const float[:, ::1] cos_table, const float[:, ::1] sin_table,
         Py_ssize_t start_pos, int n_dims, bint neox):
    """Rotate x (seq, heads, head_dim) in place for positions start_pos.. start_pos+seq-1.

    Tables are (n_ctx, n_dims / 2): cos and sin of position * theta_i. Normal RoPE
    rotates adjacent pairs (2i, 2i+1); neox pairs i with i + n_dims/2. Elements past
    n_dims are left as they are.
    """
    cdef Py_ssize_t seq = x.shape[0], heads = x.shape[1], hd = x.shape[2], s, h
    cdef Py_ssize_t half = n_dims // 2
    if n_dims > hd or n_dims % 2 or n_dims < 0 or cos_table.shape[1] < half or sin_table.shape[1] < half:
        raise ValueError(f"rope: n_dims {n_dims} does not fit head_dim {hd} or the tables")
    if start_pos < 0 or start_pos + seq > cos_table.shape[0] or start_pos + seq > sin_table.shape[0]:
        raise ValueError(f"rope: positions {start_pos}..{start_pos + seq - 1} outside the tables of {cos_table.shape[0]}")
    if seq == 0 or heads == 0 or half == 0:
        return
    with nogil:
        for s in range(seq):
            for h in range(heads):
                zl_rope_head(&x[s, h, 0], &cos_table[start_pos + s, 0], &sin_table[start_pos + s, 0], n_dims, neox)


cdef inline void _visible(int64_t qpos, int64_t window, int64_t *lo, int64_t *hi) noexcept nogil:
    # Keys a query at qpos sees: [lo, hi) in positions.
    hi[0] = qpos + 1
    lo[0] = qpos - window + 1 if window > 0 and qpos - window + 1 > 0 else 0


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
    cdef Py_ssize_t rows = scores.shape[0], n = scores.shape[1], r
    cdef int64_t lo, hi
    if group < 1 or start_pos < 0:
        raise ValueError(f"masked_softmax: group {group}, start_pos {start_pos}")
    if (rows + group - 1) // group + start_pos > n:
        raise ValueError(f"masked_softmax: {rows} rows from position {start_pos} need {start_pos + rows // group} keys, have {n}")
    with nogil:
        for r in range(rows):
            _visible(start_pos + r // group, window, &lo, &hi)
            zl_softmax_row(&scores[r, 0], lo, hi, n, scale, softcap)


def gated_activation(float[:, ::1] gate, const float[:, ::1] up, bint gelu, int threads=1):
    """gate = act(gate) * up in place: SiLU (SwiGLU) or tanh-approximated GELU (GeGLU)."""
    cdef Py_ssize_t rows = gate.shape[0], n = gate.shape[1], r
    cdef int status = 0
    if up.shape[0] != rows or up.shape[1] != n:
        raise ValueError(f"gated_activation: gate {rows}x{n}, up {up.shape[0]}x{up.shape[1]}")
    if rows == 0 or n == 0:
        return
    cdef zl_pool *pool = _pool_for(threads) if rows * n >= PARALLEL_MIN else NULL
    with nogil:
        # Rows are contiguous and packed (C order): one flat run.
        status = glu_on(pool, &gate[0, 0], &up[0, 0], rows * n, gelu)
    if status != 0:
        raise ModelError(f"gated_activation: the pool failed (status {status})")


def soft_cap(float[:, ::1] x, float cap):
    """x = cap * tanh(x / cap) in place (gemma2's final logit soft-capping)."""
    cdef Py_ssize_t rows = x.shape[0], n = x.shape[1], r
    with nogil:
        for r in range(rows):
            if n:
                zl_soft_cap(&x[r, 0], n, cap)


# ---- the whole stack of blocks, without the GIL ----------------------------------------

# Stages timed by LayerStack.run, in the order of the forward pass (the model's
# stage table uses these names).
STAGES = ("norms", "q/k/v projections", "rope + cache", "attention", "output projection",
          "gate/up projections", "GLU", "down projection")
cdef enum:
    S_NORMS = 0
    S_QKV = 1
    S_ROPE = 2
    S_ATTN = 3
    S_OUT = 4
    S_GATE_UP = 5
    S_GLU = 6
    S_DOWN = 7
    N_STAGES = 8
    # Query positions per block of the causal attention: a block multiplies only the
    # keys its last query sees (5/8 of the full square at 128 tokens).
    QUERY_BLOCK = 32
    # Up to this many query rows per task, attention uses row kernels instead of GEMMs.
    SMALL_ROWS = 8

ctypedef struct layer_c:
    zl_qtensor wq, wk, wv, wo, wg, wu, wd
    const float *attn_norm
    const float *ffn_norm
    const float *post_attn_norm
    const float *post_ffn_norm
    const float *q_norm
    const float *k_norm
    const float *bq
    const float *bk
    const float *bv
    const float *cos_t      # (n_ctx, rope_dim / 2)
    const float *sin_t
    float *k_cache          # (n_head_kv, n_ctx, head_dim)
    float *v_cache
    int swa


ctypedef struct attn_job:
    const layer_c *L
    const float *q          # (seq, n_head * head_dim)
    float *attn             # (seq, n_head * head_dim)
    float *scratch          # per runner: gathered queries, block output, scores
    int64_t slot_floats
    zl_blas blas            # run on the calling thread: the pool is the only team
    int64_t seq, start, n_ctx, hd, nh, nkv, window, n_blocks, n_tasks
    int64_t q0              # query rows [q0, seq) are computed
    int64_t next            # the next task to claim
    float scale, softcap


cdef int attn_block(attn_job *j, int64_t t, float *qg) noexcept nogil:
    """Task t of (KV head, query block): softmax(mask(Q K^T)) V from the cache. The
    latest blocks (the most keys) go first, so the last tasks claimed are the short ones."""
    cdef const layer_c *L = j.L
    cdef int64_t hd = j.hd, group = j.nh // j.nkv, HQ = j.nh * j.hd
    cdef int64_t g, b0, b1, rows, klo, khi, nk, s, r, lo, hi
    cdef int status
    cdef float *og = qg + QUERY_BLOCK * group * hd
    cdef float *sc = og + QUERY_BLOCK * group * hd
    cdef const float *kc
    cdef const float *vc
    g = t % j.nkv
    b0 = j.q0 + (j.n_blocks - 1 - t // j.nkv) * QUERY_BLOCK
    b1 = b0 + QUERY_BLOCK if b0 + QUERY_BLOCK < j.seq else j.seq
    rows = (b1 - b0) * group
    # Keys the block sees: from its first query's window start to its last query.
    _visible(j.start + b0, j.window, &klo, &hi)
    khi = j.start + b1
    nk = khi - klo
    kc = L.k_cache + (g * j.n_ctx + klo) * hd
    vc = L.v_cache + (g * j.n_ctx + klo) * hd
    if rows <= SMALL_ROWS:
        # Decoding: a few rows, read straight from q and written straight to attn.
        for r in range(rows):
            s = b0 + r // group
            zl_attn_scores(j.q + s * HQ + (g * group + r % group) * hd, kc, nk, hd, sc + r * nk)
            _visible(j.start + s, j.window, &lo, &hi)
            zl_softmax_row(sc + r * nk, lo - klo, hi - klo, nk, j.scale, j.softcap)
            zl_attn_weighted_sum(sc + r * nk, vc, nk, hd, j.attn + s * HQ + (g * group + r % group) * hd)
        return 0
    for s in range(b1 - b0):
        memcpy(qg + s * group * hd, j.q + (b0 + s) * HQ + g * group * hd, group * hd * sizeof(float))
    status = j.blas.vtable.sgemm(j.blas.ctx, ZL_ROW_MAJOR, ZL_NO_TRANS, ZL_TRANS, rows, nk, hd,
                                 1.0, qg, hd, kc, hd, 0.0, sc, nk)
    if status != ZL_BLAS_OK:
        return status
    for r in range(rows):
        _visible(j.start + b0 + r // group, j.window, &lo, &hi)
        zl_softmax_row(sc + r * nk, lo - klo, hi - klo, nk, j.scale, j.softcap)
    status = j.blas.vtable.sgemm(j.blas.ctx, ZL_ROW_MAJOR, ZL_NO_TRANS, ZL_NO_TRANS, rows, hd, nk,
                                 1.0, sc, nk, vc, hd, 0.0, og, hd)
    if status != ZL_BLAS_OK:
        return status
    for s in range(b1 - b0):
        memcpy(j.attn + (b0 + s) * HQ + g * group * hd, og + s * group * hd, group * hd * sizeof(float))
    return 0


cdef int attn_runner(void *ctx, int64_t begin, int64_t end) noexcept nogil:
    """Runners [begin, end): each owns its scratch slot and claims tasks until none are left."""
    cdef attn_job *j = <attn_job *>ctx
    cdef int64_t c, t
    cdef int status
    for c in range(begin, end):
        t = zl_claim_next(&j.next)
        while t < j.n_tasks:
            status = attn_block(j, t, j.scratch + c * j.slot_floats)
            if status != 0:
                return status
            t = zl_claim_next(&j.next)
    return 0


cdef inline double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline double _lap(double *stage, int s, double t0, bint timed) noexcept nogil:
    """In a timed pass, add the time since t0 to stage[s]; the start of the next stage."""
    cdef double now
    if not timed:
        return t0
    now = _now()
    stage[s] += now - t0
    return now


cdef const float *_vec(object a, Py_ssize_t n, str what, list keep) except? NULL:
    if a is None:
        return NULL
    cdef const float[::1] v = np.ascontiguousarray(a, dtype=np.float32)
    if v.shape[0] != n:
        raise ValueError(f"LayerStack: {what} has {v.shape[0]} values, expected {n}")
    keep.append(v)
    return &v[0]


cdef zl_qtensor _qt(object w, Py_ssize_t rows, Py_ssize_t cols, str what) except *:
    if not isinstance(w, QuantizedTensor):
        raise TypeError(f"LayerStack: {what} must be a QuantizedTensor, got {type(w).__name__}")
    cdef QuantizedTensor q = <QuantizedTensor>w
    if q.c.rows != rows or q.c.cols != cols:
        raise ValueError(f"LayerStack: {what} is {q.c.rows}x{q.c.cols}, expected {rows}x{cols}")
    return q.c


cdef class LayerStack:
    """Every block of a llama-family model, run in one nogil call per forward pass.

    Built from the model's hyper-parameters and, per layer, a dict of its
    QuantizedTensor matrices, float32 vectors, RoPE tables and KV-cache slices (all
    kept referenced here). ``run(x, start_pos)`` takes the embedded tokens x
    (seq, n_embd) and leaves the last block's output in x, the keys and values of
    positions start_pos.. in the cache. Scratch buffers are sized for ``max_seq``
    tokens per call once, at construction.
    """
    cdef layer_c *layers
    cdef int n_layer, n_embd, n_head, n_head_kv, head_dim, n_ff, rope_dim, n_ctx, window, mode
    cdef bint neox, gelu
    cdef float eps, attn_scale, attn_softcap
    cdef readonly int max_seq
    cdef list keep
    cdef zl_blas qblas, ablas
    cdef float[:, ::1] h, q, k, v, attn, o, gate, up
    cdef float[::1] attn_scratch
    cdef int64_t slot_floats, n_slots
    cdef double stage[N_STAGES]

    def __cinit__(self):
        self.layers = NULL

    def __init__(self, hp, list layers, int n_ctx, int max_seq, str mode="fast"):
        cdef int il
        cdef layer_c *L
        self.n_layer = len(layers)
        self.n_embd, self.n_head, self.n_head_kv = hp.n_embd, hp.n_head, hp.n_head_kv
        self.head_dim, self.n_ff, self.rope_dim = hp.head_dim, hp.n_ff, hp.rope_dim
        self.neox, self.gelu, self.eps = hp.rope_neox, hp.gelu, hp.rms_eps
        self.attn_scale, self.attn_softcap = hp.attn_scale, hp.attn_softcap
        self.window = hp.sliding_window
        self.n_ctx, self.max_seq = n_ctx, max_seq
        if max_seq < 1 or n_ctx < 1 or self.n_head % self.n_head_kv:
            raise ValueError(f"LayerStack: max_seq {max_seq}, n_ctx {n_ctx}, heads {self.n_head}/{self.n_head_kv}")
        if mode not in ("fast", "exact"):
            raise ValueError(f"LayerStack: mode must be 'fast' or 'exact', got {mode!r}")
        self.mode = ZL_QGEMM_FAST if mode == "fast" else ZL_QGEMM_EXACT
        # Quantized products on the default backend (as zigllama.qgemm); attention's small
        # products on our own GEMM run on the calling thread, its tasks spread over the
        # pool (a BLAS with threads of its own would compete with the pool's workers).
        self.qblas = (<BlasInterface>get_blas()).c
        self.ablas = single_threaded((<BlasInterface>get_blas("generic")).c)
        self.keep = []
        self.layers = <layer_c *>_calloc_layers(self.n_layer)
        cdef int E = self.n_embd, HQ = self.n_head * self.head_dim, HK = self.n_head_kv * self.head_dim
        cdef int half = self.rope_dim // 2
        cdef float[:, :, ::1] kc, vc
        cdef const float[:, ::1] ct, st
        for il in range(self.n_layer):
            d = layers[il]
            L = &self.layers[il]
            L.wq = _qt(d["wq"], HQ, E, f"blk.{il} attn_q")
            L.wk = _qt(d["wk"], HK, E, f"blk.{il} attn_k")
            L.wv = _qt(d["wv"], HK, E, f"blk.{il} attn_v")
            L.wo = _qt(d["wo"], E, HQ, f"blk.{il} attn_output")
            L.wg = _qt(d["w_gate"], self.n_ff, E, f"blk.{il} ffn_gate")
            L.wu = _qt(d["w_up"], self.n_ff, E, f"blk.{il} ffn_up")
            L.wd = _qt(d["w_down"], E, self.n_ff, f"blk.{il} ffn_down")
            self.keep.extend((d["wq"], d["wk"], d["wv"], d["wo"], d["w_gate"], d["w_up"], d["w_down"]))
            L.attn_norm = _vec(d["attn_norm"], E, "attn_norm", self.keep)
            L.ffn_norm = _vec(d["ffn_norm"], E, "ffn_norm", self.keep)
            L.post_attn_norm = _vec(d.get("post_attn_norm"), E, "post_attention_norm", self.keep)
            L.post_ffn_norm = _vec(d.get("post_ffn_norm"), E, "post_ffw_norm", self.keep)
            L.q_norm = _vec(d.get("q_norm"), self.head_dim, "attn_q_norm", self.keep)
            L.k_norm = _vec(d.get("k_norm"), self.head_dim, "attn_k_norm", self.keep)
            L.bq = _vec(d.get("bq"), HQ, "attn_q bias", self.keep)
            L.bk = _vec(d.get("bk"), HK, "attn_k bias", self.keep)
            L.bv = _vec(d.get("bv"), HK, "attn_v bias", self.keep)
            ct, st = d["cos"], d["sin"]
            if ct.shape[0] < n_ctx or ct.shape[1] != half or st.shape[0] < n_ctx or st.shape[1] != half:
                raise ValueError(f"LayerStack: RoPE tables {ct.shape[0]}x{ct.shape[1]}, need {n_ctx}x{half}")
            self.keep.extend((ct, st))
            L.cos_t, L.sin_t = &ct[0, 0], &st[0, 0]
            kc, vc = d["k_cache"], d["v_cache"]
            if not (kc.shape[0] == vc.shape[0] == self.n_head_kv and kc.shape[1] == vc.shape[1] == n_ctx
                    and kc.shape[2] == vc.shape[2] == self.head_dim):
                raise ValueError(f"LayerStack: caches {kc.shape[0]}x{kc.shape[1]}x{kc.shape[2]}, "
                                 f"expected {self.n_head_kv}x{n_ctx}x{self.head_dim}")
            self.keep.extend((kc, vc))
            L.k_cache, L.v_cache = &kc[0, 0, 0], &vc[0, 0, 0]
            L.swa = bool(d.get("swa")) and self.window > 0
        group = self.n_head // self.n_head_kv
        f32 = np.float32
        self.h = np.zeros((max_seq, E), f32)
        self.q = np.zeros((max_seq, HQ), f32)
        self.k = np.zeros((max_seq, HK), f32)
        self.v = np.zeros((max_seq, HK), f32)
        self.attn = np.zeros((max_seq, HQ), f32)
        self.o = np.zeros((max_seq, E), f32)
        self.gate = np.zeros((max_seq, self.n_ff), f32)
        self.up = np.zeros((max_seq, self.n_ff), f32)
        # Per pool slot, for one attention task: its queries gathered, its output, its scores.
        self.slot_floats = QUERY_BLOCK * group * (2 * self.head_dim + n_ctx)
        self.n_slots = 1
        self.attn_scratch = np.zeros(self.slot_floats, f32)

    def __dealloc__(self):
        _free_layers(self.layers)
        self.layers = NULL

    def run(self, float[:, ::1] x, Py_ssize_t start_pos, int threads=1, dict timings=None, n_out=None):
        """The blocks over x (seq, n_embd) in place, at positions start_pos.. .

        ``n_out``: how many of the last rows of x the caller reads afterwards (default
        all). The last block computes its keys and values for every position (the
        cache needs them) but its queries, attention output and feed-forward only for
        those rows, as llama.cpp does; the other rows of x are left unfinished.
        """
        cdef Py_ssize_t seq = x.shape[0]
        cdef Py_ssize_t keep = seq if n_out is None else n_out
        cdef int status, i
        if keep < 0 or keep > seq:
            raise ValueError(f"LayerStack.run: n_out {keep} outside 0..{seq}")
        if x.shape[1] != self.n_embd:
            raise ValueError(f"LayerStack.run: x has {x.shape[1]} columns, n_embd is {self.n_embd}")
        if seq < 1 or seq > self.max_seq or start_pos < 0 or start_pos + seq > self.n_ctx:
            raise ValueError(f"LayerStack.run: {seq} tokens from position {start_pos} "
                             f"(at most {self.max_seq} per call, context {self.n_ctx})")
        cdef zl_pool *pool = _pool_for(threads)
        cdef int slots = pool_threads(pool) if pool != NULL else 1
        if slots > self.n_slots:
            self.attn_scratch = np.zeros(slots * self.slot_floats, np.float32)
            self.n_slots = slots
        cdef bint timed = timings is not None
        for i in range(N_STAGES):
            self.stage[i] = 0.0
        with nogil:
            status = self._run(&x[0, 0], seq, start_pos, pool, threads, timed, seq - keep)
        if status == ZL_BLAS_ENOMEM:
            raise OutOfMemory(f"LayerStack.run: no memory for a product's scratch ({seq} tokens)")
        if status != 0:
            raise ModelError(f"LayerStack.run: a product failed (status {status}) at {seq} tokens "
                             f"from position {start_pos}")
        if timed:
            for i in range(N_STAGES):
                timings[STAGES[i]] = timings.get(STAGES[i], 0.0) + self.stage[i]

    cdef int _linear(self, const zl_qtensor *w, int64_t m, const float *x, int64_t ldx, float *y,
                     int64_t ldy, zl_pool *pool, int threads) noexcept nogil:
        return qgemm_on(self.qblas, pool, w, m, x, ldx, y, ldy, self.mode, threads)

    cdef int _run(self, float *x, int64_t seq, int64_t start, zl_pool *pool, int threads, bint timed,
                  int64_t last_skip) noexcept nogil:
        cdef int64_t E = self.n_embd, hd = self.head_dim, nh = self.n_head, nkv = self.n_head_kv
        cdef int64_t HQ = nh * hd, HK = nkv * hd, F = self.n_ff, group = nh // nkv, half = self.rope_dim // 2
        cdef float *h = &self.h[0, 0]
        cdef float *q = &self.q[0, 0]
        cdef float *k = &self.k[0, 0]
        cdef float *v = &self.v[0, 0]
        cdef float *attn = &self.attn[0, 0]
        cdef float *o = &self.o[0, 0]
        cdef float *gate = &self.gate[0, 0]
        cdef float *up = &self.up[0, 0]
        cdef int64_t il, s, j, hh, g, i
        cdef int64_t r0 = 0, m = seq   # rows [r0, seq) of this block's output are computed
        cdef int status
        cdef double t0 = 0
        cdef layer_c *L
        cdef layer_c *nxt
        if self.n_layer == 0:
            return 0
        t0 = _now() if timed else 0.0
        # The first block's input norm; later ones come fused with the residual add.
        for s in range(seq):
            zl_rms_norm_row(x + s * E, self.layers[0].attn_norm, self.eps, h + s * E, E)
        _lap(self.stage, S_NORMS, t0, timed)
        for il in range(self.n_layer):
            L = &self.layers[il]
            nxt = &self.layers[il + 1] if il + 1 < self.n_layer else NULL
            if nxt == NULL:
                r0 = last_skip
                m = seq - r0
            t0 = _now() if timed else 0.0
            status = self._linear(&L.wq, m, h + r0 * E, E, q + r0 * HQ, HQ, pool, threads) if m else 0
            if status == 0:
                status = self._linear(&L.wk, seq, h, E, k, HK, pool, threads)
            if status == 0:
                status = self._linear(&L.wv, seq, h, E, v, HK, pool, threads)
            if status != 0:
                return status
            t0 = _lap(self.stage, S_QKV, t0, timed)
            for s in range(seq):
                if L.bq != NULL and s >= r0:
                    for i in range(HQ):
                        q[s * HQ + i] += L.bq[i]
                if L.bk != NULL:
                    for i in range(HK):
                        k[s * HK + i] += L.bk[i]
                if L.bv != NULL:
                    for i in range(HK):
                        v[s * HK + i] += L.bv[i]
                for hh in range(nh if s >= r0 else 0):
                    if L.q_norm != NULL:
                        zl_rms_norm_row(q + s * HQ + hh * hd, L.q_norm, self.eps, q + s * HQ + hh * hd, hd)
                    if half:
                        zl_rope_head(q + s * HQ + hh * hd, L.cos_t + (start + s) * half, L.sin_t + (start + s) * half,
                                     self.rope_dim, self.neox)
                for g in range(nkv):
                    if L.k_norm != NULL:
                        zl_rms_norm_row(k + s * HK + g * hd, L.k_norm, self.eps, k + s * HK + g * hd, hd)
                    if half:
                        zl_rope_head(k + s * HK + g * hd, L.cos_t + (start + s) * half, L.sin_t + (start + s) * half,
                                     self.rope_dim, self.neox)
                    memcpy(L.k_cache + (g * self.n_ctx + start + s) * hd, k + s * HK + g * hd, hd * sizeof(float))
                    memcpy(L.v_cache + (g * self.n_ctx + start + s) * hd, v + s * HK + g * hd, hd * sizeof(float))
            t0 = _lap(self.stage, S_ROPE, t0, timed)
            if m == 0:
                break   # the last block's keys and values are cached; no row is read
            status = self._attention(L, q, attn, r0, seq, start, pool)
            if status != 0:
                return status
            t0 = _lap(self.stage, S_ATTN, t0, timed)
            status = self._linear(&L.wo, m, attn + r0 * HQ, HQ, o + r0 * E, E, pool, threads)
            if status != 0:
                return status
            t0 = _lap(self.stage, S_OUT, t0, timed)
            for s in range(r0, seq):
                zl_residual_norm_row(x + s * E, o + s * E, L.post_attn_norm, L.ffn_norm, self.eps, h + s * E, E)
            t0 = _lap(self.stage, S_NORMS, t0, timed)
            status = self._linear(&L.wg, m, h + r0 * E, E, gate + r0 * F, F, pool, threads)
            if status == 0:
                status = self._linear(&L.wu, m, h + r0 * E, E, up + r0 * F, F, pool, threads)
            if status != 0:
                return status
            t0 = _lap(self.stage, S_GATE_UP, t0, timed)
            status = glu_on(pool, gate + r0 * F, up + r0 * F, m * F, self.gelu)
            if status != 0:
                return status
            t0 = _lap(self.stage, S_GLU, t0, timed)
            status = self._linear(&L.wd, m, gate + r0 * F, F, o + r0 * E, E, pool, threads)
            if status != 0:
                return status
            t0 = _lap(self.stage, S_DOWN, t0, timed)
            for s in range(r0, seq):
                zl_residual_norm_row(x + s * E, o + s * E, L.post_ffn_norm,
                                     nxt.attn_norm if nxt != NULL else NULL, self.eps, h + s * E, E)
            _lap(self.stage, S_NORMS, t0, timed)
        return 0

    cdef int _attention(self, layer_c *L, const float *q, float *attn, int64_t q0, int64_t seq, int64_t start,
                        zl_pool *pool) noexcept nogil:
        """attn = softmax(mask(Q K^T)) V, tasks of one KV head and query block on the pool."""
        cdef attn_job job
        job.L = L
        job.q = q
        job.attn = attn
        job.scratch = &self.attn_scratch[0]
        job.slot_floats = self.slot_floats
        job.blas = self.ablas
        job.seq, job.start, job.n_ctx = seq, start, self.n_ctx
        job.hd, job.nh, job.nkv = self.head_dim, self.n_head, self.n_head_kv
        job.window = self.window if L.swa else 0
        job.q0 = q0
        job.n_blocks = (seq - q0 + QUERY_BLOCK - 1) // QUERY_BLOCK
        job.n_tasks = job.n_blocks * self.n_head_kv
        job.next = 0
        job.scale, job.softcap = self.attn_scale, self.attn_softcap
        cdef int64_t runners = self.n_slots if self.n_slots < job.n_tasks else job.n_tasks
        if pool == NULL or runners < 2:
            return attn_runner(&job, 0, 1)
        return parallel_for_status(pool, runners, 1, attn_runner, &job)


cdef extern from "stdlib.h" nogil:
    void *calloc(size_t n, size_t size)
    void free(void *p)


cdef layer_c *_calloc_layers(int n) except NULL:
    cdef layer_c *p = <layer_c *>calloc(n if n > 0 else 1, sizeof(layer_c))
    if p == NULL:
        raise MemoryError("LayerStack: no memory for the layer table")
    return p


cdef void _free_layers(layer_c *p) noexcept:
    free(p)
