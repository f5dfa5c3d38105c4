/* Ends one instantiation of the GEMM templates (kernel_impl.h or kernel_avx512.h,
 * then generic_impl.h) in generic.c: the parameters it defined, so the next
 * instantiation defines its own. (No include guard: included once per
 * instantiation on purpose. Undefining a name an instantiation did not define is
 * harmless.) */
#undef ZL_T
#undef ZL_X
#undef ZL_PACK_B_MIN_TILE_ROWS
#undef ZL_MR
#undef ZL_NR
#undef ZL_TMAX
#undef ZL_SQRT
#undef ZL_BLOCKING
#undef ZL_GEMM_WIDE
#undef ZL_V
#undef ZL_W
#undef ZL_MASK
#undef ZL_VZERO
#undef ZL_VLOAD
#undef ZL_VLOADU
#undef ZL_VSTOREU
#undef ZL_VBCAST
#undef ZL_VSET1
#undef ZL_VMUL
#undef ZL_VFMADD
#undef ZL_VMASK_STOREU
#undef ZL_VMASKZ_LOADU
