/* The number of CPUs this process may run on, as os.sched_getaffinity(0)
 * counts them, in one system call and no Python objects: the thread setting's
 * cache (threading.pyx) checks it on every call. -1 where it cannot be read
 * that way (not Linux, or a mask wider than cpu_set_t): the caller asks
 * Python then. */
#ifndef ZIGLLAMA_THREADING_AFFINITY_H
#define ZIGLLAMA_THREADING_AFFINITY_H

#if defined(__linux__)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>

static inline int zl_affinity_cpus(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    return CPU_COUNT(&set);
}
#else
static inline int zl_affinity_cpus(void) { return -1; }
#endif

#endif
