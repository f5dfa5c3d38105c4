/* A guard against SIGBUS while reading a memory-mapped file.
 *
 * Reading a page of a map beyond the current end of its file (the file was truncated
 * or rewritten shorter after it was mapped) raises SIGBUS, which kills the process.
 * Code that reads a file's map runs its reads through zl_fault_guarded_call(): a
 * SIGBUS raised by the calling thread inside the call jumps back out of it, and the
 * call returns the given fault status instead. A SIGBUS anywhere else goes to the
 * handler that was installed before ours (faulthandler's, or the default: the process
 * dies as it would have).
 *
 * One handler and one thread-local frame pointer for the whole package: they live in
 * the memory_mapping extension (zl_fault_guard.c), and the other extensions reach
 * them through the functions memory_mapping.pxd exports, never by linking to these
 * symbols. zl_fault_guard_install() runs once, when memory_mapping is imported. A
 * handler installed later (faulthandler.enable() after the import) takes SIGBUS from
 * us; re-installing over it could make two handlers call each other for ever, so the
 * guard then protects nothing and a fault kills the process as it did without it.
 *
 * The guarded code must hold no lock and own no allocation it would leak when the
 * jump skips the rest of it: kernels over plain buffers, parsers that write into a
 * context. */
#ifndef ZIGLLAMA_ZL_FAULT_GUARD_H
#define ZIGLLAMA_ZL_FAULT_GUARD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int (*zl_fault_guarded_fn)(void *arg);

/* Installs the handler (once; later calls do nothing). 0, or -1 if sigaction failed. */
int zl_fault_guard_install(void);

/* fn(arg), or fault_status if the calling thread took a SIGBUS inside it. Nests. */
int zl_fault_guarded_call(zl_fault_guarded_fn fn, void *arg, int fault_status);

/* Reads one byte of every page of [p, p + n): 0 if all are readable, -1 on SIGBUS. */
int zl_fault_touch(const void *p, uint64_t n);

#ifdef __cplusplus
}
#endif

#endif /* ZIGLLAMA_ZL_FAULT_GUARD_H */
