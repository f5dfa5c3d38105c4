/* The DLPack exchange structs (DLPack 1.0, dmlc/dlpack's dlpack.h), as the standard
 * defines them: the ABI every producer and consumer shares, so np.from_dlpack(t),
 * torch.from_dlpack(t) and Tensor.from_dlpack(x) move memory with no copy.
 *
 * Only the CPU device and the dtypes zigllama has are used; the layouts are the
 * standard's and must not change. The names carry a zl_ prefix so a program that also
 * includes dlpack.h links both.
 */
#ifndef ZIGLLAMA_ZL_DLPACK_H
#define ZIGLLAMA_ZL_DLPACK_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZL_DLPACK_MAJOR_VERSION 1
#define ZL_DLPACK_MINOR_VERSION 0

/* DLDeviceType and DLDataTypeCode values zigllama uses. */
#define ZL_DL_CPU 1
#define ZL_DL_INT 0
#define ZL_DL_FLOAT 2
#define ZL_DL_BFLOAT 4

/* DLManagedTensorVersioned.flags bits. */
#define ZL_DLPACK_FLAG_READ_ONLY ((uint64_t)1 << 0)
#define ZL_DLPACK_FLAG_IS_COPIED ((uint64_t)1 << 1)

typedef struct zl_dl_device { int32_t device_type; int32_t device_id; } zl_dl_device;
typedef struct zl_dl_data_type { uint8_t code; uint8_t bits; uint16_t lanes; } zl_dl_data_type;

typedef struct zl_dl_tensor {
    void *data;
    zl_dl_device device;
    int32_t ndim;
    zl_dl_data_type dtype;
    int64_t *shape;
    int64_t *strides;        /* in elements; NULL means compact row-major */
    uint64_t byte_offset;
} zl_dl_tensor;

/* The legacy (unversioned) capsule "dltensor". */
typedef struct zl_dl_managed_tensor {
    zl_dl_tensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct zl_dl_managed_tensor *self);
} zl_dl_managed_tensor;

typedef struct zl_dlpack_version { uint32_t major; uint32_t minor; } zl_dlpack_version;

/* The versioned capsule "dltensor_versioned" (DLPack >= 1.0). */
typedef struct zl_dl_managed_tensor_versioned {
    zl_dlpack_version version;
    void *manager_ctx;
    void (*deleter)(struct zl_dl_managed_tensor_versioned *self);
    uint64_t flags;
    zl_dl_tensor dl_tensor;
} zl_dl_managed_tensor_versioned;

#ifdef __cplusplus
}
#endif

#endif /* ZIGLLAMA_ZL_DLPACK_H */
