/* OpenMP where the build found it; serial stand-ins where it did not. */
#ifndef ZIGLLAMA_ZL_OMP_H
#define ZIGLLAMA_ZL_OMP_H

#ifdef __cplusplus
extern "C" {
#endif

/* The largest thread count accepted anywhere (pool, OpenMP team, settings):
 * libgomp exits the process when it cannot create a team, and thousands of
 * threads on any machine of today only cost memory. Python's MAX_THREADS. */
#define ZL_MAX_THREADS 1024

#if defined(_OPENMP)
#include <omp.h>
static inline int zl_omp_max_threads(void) { return omp_get_max_threads(); }
static inline int zl_omp_version(void) { return _OPENMP; }
#else
static inline int zl_omp_max_threads(void) { return 1; }
static inline int zl_omp_version(void) { return 0; }
#endif

#ifdef __cplusplus
}
#endif

#endif
