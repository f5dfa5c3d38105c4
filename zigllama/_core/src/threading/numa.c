/* NUMA memory policy through the system calls themselves (no libnuma), and
 * cache-line aligned allocation.
 *
 * set_mempolicy(2) sets the policy of the calling thread: each worker sets its own
 * when it starts. mbind(2) binds a range of pages (NumaAllocator). On a machine
 * with one node every policy is the same, so nothing is called at all. The system
 * calls may also be refused (seccomp in containers, kernels without NUMA): callers
 * get -1 / an unbound mapping and carry on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/syscall.h>
#endif

#include "zigllama/zl_threading.h"
#include "threading_internal.h"

/* From <linux/mempolicy.h> (not installed everywhere). */
enum { MPOL_PREFERRED_ = 1, MPOL_BIND_ = 2, MPOL_INTERLEAVE_ = 3, MPOL_LOCAL_ = 4 };
enum { MPOL_F_NODE_ = 1 << 0, MPOL_F_ADDR_ = 1 << 1 };

#define ZL_MAX_NODES 1024
#define MASK_WORDS (ZL_MAX_NODES / (8 * sizeof(unsigned long)))

static void mask_set(unsigned long *mask, int node) {
    mask[node / (8 * sizeof(unsigned long))] |= 1UL << (node % (8 * sizeof(unsigned long)));
}

int zl_numa_set_thread_policy(int policy, int node, int num_nodes) {
#if defined(__linux__) && defined(SYS_set_mempolicy)
    if (num_nodes < 2 || num_nodes > ZL_MAX_NODES) return -1;
    unsigned long mask[MASK_WORDS];
    memset(mask, 0, sizeof mask);
    long rc;
    switch (policy) {
    case ZL_NUMA_INTERLEAVE:
        for (int i = 0; i < num_nodes; i++) mask_set(mask, i);
        rc = syscall(SYS_set_mempolicy, MPOL_INTERLEAVE_, mask, (unsigned long)ZL_MAX_NODES + 1);
        break;
    case ZL_NUMA_LOCAL:
    case ZL_NUMA_BALANCED:
        if (node >= 0 && node < num_nodes) {
            /* Prefer the worker's node, fall back to others when it is full. */
            mask_set(mask, node);
            rc = syscall(SYS_set_mempolicy, MPOL_PREFERRED_, mask, (unsigned long)ZL_MAX_NODES + 1);
        } else {
            rc = syscall(SYS_set_mempolicy, MPOL_LOCAL_, NULL, 0UL);
        }
        break;
    default:
        return -1;
    }
    return rc == 0 ? 0 : -1;
#else
    (void)policy;
    (void)node;
    (void)num_nodes;
    return -1;
#endif
}

void *zl_numa_alloc(size_t size, int node, int num_nodes, int *bound) {
    if (bound) *bound = 0;
    if (size == 0) size = 1;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
#if defined(__linux__) && defined(SYS_mbind)
    if (node >= 0 && num_nodes > 1 && node < num_nodes && num_nodes <= ZL_MAX_NODES) {
        unsigned long mask[MASK_WORDS];
        memset(mask, 0, sizeof mask);
        mask_set(mask, node);
        /* Pages are placed on first touch, so binding before use is enough. */
        if (syscall(SYS_mbind, p, size, MPOL_BIND_, mask, (unsigned long)ZL_MAX_NODES + 1, 0U) == 0 && bound)
            *bound = 1;
    }
#else
    (void)node;
    (void)num_nodes;
#endif
    return p;
}

void zl_numa_free(void *ptr, size_t size) {
    if (ptr != NULL) munmap(ptr, size == 0 ? 1 : size);
}

int zl_numa_node_of(const void *ptr) {
#if defined(__linux__) && defined(SYS_get_mempolicy)
    int node = -1;
    if (syscall(SYS_get_mempolicy, &node, NULL, 0UL, ptr, MPOL_F_NODE_ | MPOL_F_ADDR_) != 0) return -1;
    return node;
#else
    (void)ptr;
    return -1;
#endif
}

void *zl_cacheline_calloc(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    size_t bytes = count * size;
    if (bytes > SIZE_MAX - ZL_CACHE_LINE) return NULL;
    bytes = (bytes + ZL_CACHE_LINE - 1) / ZL_CACHE_LINE * ZL_CACHE_LINE;
    if (bytes == 0) bytes = ZL_CACHE_LINE;
    void *p = aligned_alloc(ZL_CACHE_LINE, bytes);
    if (p != NULL) memset(p, 0, bytes);
    return p;
}

void zl_cacheline_free(void *ptr) { free(ptr); }
