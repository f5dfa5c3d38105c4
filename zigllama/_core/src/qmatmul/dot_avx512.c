/* AVX-512 VNNI kernels: the x86 kernels with vpdpbusd (four unsigned x signed
 * byte products summed into each int32 lane in one instruction, in its 256-bit
 * AVX-512VL form, as ggml uses it) in place of maddubs + madd, vpdpwssd in place
 * of madd + add, vpmovm2b to spread 32 bits into 32 bytes and masked byte adds.
 * Compiled twice: once for AVX-512 VNNI alone, once with BITALG as well (Q5_0's
 * fifth bits picked straight into a mask by vpshufbitqmb), the second table
 * taken where the CPU has BITALG. */
#include "qmatmul_impl.h"
#include "../quantization/iq_grids.h"

#if ZL_X86

#define QK_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define QK_NAME(name) avx512vnni_##name
#define QK_DOT_U8I8(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#define QK_DPWSSD(acc, a, b) _mm256_dpwssd_epi32((acc), (a), (b))
#define QK_DPBUSD(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#define QK_MASK_TO_BYTES(v) _mm256_movm_epi8((__mmask32)(v))
#define QK_VNNI 1 /* vpdpbusd: int32 sums, no saturation */
#include "dot_x86_impl.h"

#undef QK_TARGET
#undef QK_NAME
#define QK_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bitalg")))
#define QK_NAME(name) avx512bitalg_##name
#define QK_BITSHUFFLE 1
#include "dot_x86_impl.h"

const zl_qdot_fn *const zl_qdot_avx512_vnni = avx512vnni_table;
const zl_qdot_fn *const zl_qdot_avx512_bitalg = avx512bitalg_table;

#else

static const zl_qdot_fn no_kernels[ZL_GGML_TYPE_COUNT];
const zl_qdot_fn *const zl_qdot_avx512_vnni = no_kernels;
const zl_qdot_fn *const zl_qdot_avx512_bitalg = no_kernels;

#endif
