/* Shared between the pool and the NUMA helpers; not part of the public header. */
#ifndef ZIGLLAMA_THREADING_INTERNAL_H
#define ZIGLLAMA_THREADING_INTERNAL_H

/* Set the calling thread's memory policy (ZL_NUMA_*) with set_mempolicy(2):
 * 0 on success, -1 when the kernel refused or the policy does not apply. */
int zl_numa_set_thread_policy(int policy, int node, int num_nodes);

#endif
