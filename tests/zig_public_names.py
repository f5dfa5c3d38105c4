"""The public names of each ZigLlama module that a docs page is read beside.

Each list is the public declarations of one ZigLlama source file: every top-level
`pub const` / `pub fn` / `pub var`, every `pub fn` and `pub const` inside its public
structs, enums and unions (as `Type.member`), the variants of its public enums and the
members of its public error sets. Struct fields are not listed. Names only: what a page
must explain, not code.

- tensors.md: the public declarations of ZigLlama's src/foundation/tensor.zig
- memory-management.md: ZigLlama has no Zig file for it; the names are the Zig standard
  library allocator concepts the foundation layer is written with
- memory-mapping.md: the public declarations of ZigLlama's src/foundation/memory_mapping.zig
- gguf-format.md: the public declarations of ZigLlama's src/foundation/gguf_format.zig
- quantization.md: the public declarations of ZigLlama's src/linear_algebra/quantization.zig,
  k_quantization.zig and iq_quantization.zig (the GGUF loader's dequantizers in
  gguf_format.zig are private; `GGUFModelLoader.loadTensor` is listed with gguf-format.md)
- blas-integration.md: the public declarations of ZigLlama's src/foundation/blas_integration.zig
- threading.md: the public declarations of ZigLlama's src/foundation/threading.zig
"""


def _members(owner, names):
    return [f"{owner}.{name}" for name in names.split()]


ZIG_SOURCES = {
    "tensors.md": "src/foundation/tensor.zig",
    "memory-management.md": "Zig std: std.mem and std.heap allocators, defer, errdefer",
    "memory-mapping.md": "src/foundation/memory_mapping.zig",
    "gguf-format.md": "src/foundation/gguf_format.zig",
    "quantization.md": "src/linear_algebra/quantization.zig, k_quantization.zig, iq_quantization.zig",
    "blas-integration.md": "src/foundation/blas_integration.zig",
    "threading.md": "src/foundation/threading.zig",
    "cython-api.md": "no Zig module: the C and Cython API for other extensions",
}

ZIG_PUBLIC_NAMES = {
    "cython-api.md": [],
    "tensors.md": [
        "Shape",
        "TensorError",
        *_members("TensorError", "InvalidShape IncompatibleShapes InvalidIndex OutOfMemory"),
        "Tensor",
        *_members("Tensor", "init deinit ndim fill get set add elementWiseMultiply matmul print"),
    ],
    "memory-management.md": [
        "std.mem.Allocator",
        *_members("Allocator", "alloc alignedAlloc free resize create destroy dupe"),
        "std.heap.c_allocator",
        "std.heap.page_allocator",
        "std.heap.GeneralPurposeAllocator",
        *_members("GeneralPurposeAllocator", "allocator deinit"),
        "std.heap.ArenaAllocator",
        *_members("ArenaAllocator", "init allocator reset deinit"),
        "std.heap.FixedBufferAllocator",
        *_members("FixedBufferAllocator", "init allocator reset"),
        "std.testing.allocator",
        "std.testing.FailingAllocator",
        "defer",
        "errdefer",
    ],
    "memory-mapping.md": [
        "MemoryMap",
        *_members("MemoryMap", "Protection Flags fromFile anonymous deinit lock unlock "
                               "prefault advise getSlice createTensor sync getStats"),
        "MemoryAdvice",
        *_members("MemoryAdvice", "Normal Random Sequential WillNeed DontNeed"),
        "MemoryStats",
        "ModelFileMapper",
        *_members("ModelFileMapper", "init deinit loadModelFile createModelTensor "
                                     "getTotalMemoryUsage printMemoryUsage"),
        "GGUFMapper",
        *_members("GGUFMapper", "init deinit loadGGUFFile createWeightTensor"),
        "MappingOptimizer",
        "MappingOptimizer.detectOptimalStrategy",
        "MappingStrategy",
    ],
    "gguf-format.md": [
        "GGUF_MAGIC",
        "GGUF_VERSION",
        "GGUFType",
        "GGUFType.size",
        *_members("GGUFType", "uint8 int8 uint16 int16 uint32 int32 float32 bool string "
                              "array uint64 int64 float64"),
        "GGMLType",
        *_members("GGMLType", "blockSize typeSize toString"),
        *_members("GGMLType", "f32 f16 q4_0 q4_1 q5_0 q5_1 q8_0 q8_1 q2_k q3_k q4_k q5_k "
                              "q6_k q8_k iq2_xxs iq2_xs iq3_xxs iq1_s iq4_nl iq3_s iq2_s "
                              "iq4_xs iq1_m bf16 iq4_ks"),
        "GGUFValue",
        *_members("GGUFValue", "deinit format"),
        "GGUFArray",
        "GGUFArray.deinit",
        "GGUFTensorInfo",
        *_members("GGUFTensorInfo", "deinit elementCount sizeInBytes print"),
        "GGUFHeader",
        "GGUFHeader.validate",
        "GGUFFile",
        *_members("GGUFFile", "init deinit getMetadata getMetadataString getMetadataInt "
                              "getMetadataFloat getTensor printSummary printDetailedMetadata"),
        "GGUFReader",
        *_members("GGUFReader", "init readFile readTensorData"),
        "GGUFModelLoader",
        *_members("GGUFModelLoader", "init deinit loadTensor getArchitecture getContextLength "
                                     "getEmbeddingLength getBlockCount getAttentionHeadCount"),
        "GGUFUtils",
        *_members("GGUFUtils", "validateFile estimateMemoryUsage listTensors"),
    ],
    "quantization.md": [
        "QuantType",
        *_members("QuantType", "F32 F16 INT8 Q4_0 Q4_1 Q8_0"),
        "QuantParams",
        "QuantizedTensor",
        *_members("QuantizedTensor", "deinit compressionRatio"),
        "quantizeTensor",
        "dequantizeTensor",
        # k_quantization.zig
        "KQuantType",
        *_members("KQuantType", "Q4_K Q5_K Q6_K"),
        "QK_K",
        "K_SCALE_SIZE",
        "BlockQ4K",
        "BlockQ4K.size",
        "BlockQ5K",
        "BlockQ5K.size",
        "BlockQ6K",
        "BlockQ6K.size",
        "KQuantizer",
        *_members("KQuantizer", "init quantize dequantize getCompressionRatio getQualityRetention"),
        # iq_quantization.zig
        "IQType",
        *_members("IQType", "IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_S IQ2_M IQ3_XXS IQ3_XS IQ3_S IQ3_M "
                            "IQ4_XS IQ4_NL"),
        "QK_IQ",
        "BlockIQ1S",
        "BlockIQ1S.size",
        "BlockIQ2XS",
        "BlockIQ2XS.size",
        "BlockIQ3S",
        "BlockIQ3S.size",
        "BlockIQ4NL",
        "BlockIQ4NL.size",
        "IQuantizer",
        *_members("IQuantizer", "init quantize dequantize getCompressionRatio getQualityRetention"),
    ],
    "blas-integration.md": [
        "BlasLibrary",
        *_members("BlasLibrary", "toString getExpectedPerformance"),
        *_members("BlasLibrary", "generic openblas mkl accelerate atlas"),
        "BlasConfig",
        "BlasConfig.detect",
        "BlasOperation",
        "BlasOperation.toChar",
        *_members("BlasOperation", "no_transpose transpose conjugate"),
        "MatrixLayout",
        "MatrixLayout.leadingDimension",
        *_members("MatrixLayout", "row_major column_major"),
        "BlasInterface",
        *_members("BlasInterface", "VTable dot axpy scal nrm2 gemv gemm deinit"),
        "GenericBlas",
        *_members("GenericBlas", "init interface"),
        "OpenBlas",
        *_members("OpenBlas", "init interface"),
        "BlasManager",
        *_members("BlasManager", "init deinit matmul matvec vectorScale vectorDot "
                                 "vectorNorm getStats"),
        "BlasStats",
        *_members("BlasStats", "BlasOpType init recordOperation getGflops print"),
        *_members("BlasStats.BlasOpType", "dot axpy scal nrm2 gemv gemm"),
        "BlasUtils",
        *_members("BlasUtils", "benchmarkLibraries validateImplementation"),
    ],
    "threading.md": [
        "ThreadPoolConfig",
        "ThreadPoolConfig.detect",
        "NumaPolicy",
        "NumaPolicy.fromString",
        *_members("NumaPolicy", "local interleave balanced disabled"),
        "CpuTopology",
        *_members("CpuTopology", "detect print"),
        "WorkItem",
        *_members("WorkItem", "execute isCompleted waitForCompletion"),
        "WorkStealingQueue",
        *_members("WorkStealingQueue", "init deinit push pop steal size"),
        "Worker",
        *_members("Worker", "init deinit start stop"),
        "ThreadPool",
        *_members("ThreadPool", "init deinit start stop submit submitToWorker "
                                "getWorkerCount getQueueSizes"),
        "ParallelOps",
        *_members("ParallelOps", "init matmul softmax"),
        "NumaAllocator",
        *_members("NumaAllocator", "init allocator getPreferredNode"),
        "ThreadingUtils",
        *_members("ThreadingUtils", "setThreadAffinity getCurrentThreadId yield sleep "
                                    "getCacheLineSize allocAligned"),
        "ThreadPoolStats",
        *_members("ThreadPoolStats", "init recordTaskExecution recordWorkSteal print"),
    ],
}
