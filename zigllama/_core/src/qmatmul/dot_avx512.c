/* AVX-512 VNNI kernels (vpdpbusd: four unsigned x signed byte products summed
 * into each int32 lane in one instruction). */
#include "qmatmul_impl.h"

const zl_qdot_fn zl_qdot_avx512_vnni[ZL_GGML_TYPE_COUNT] = {0};
