/* The SIGBUS guard (see zl_fault_guard.h): one handler, one thread-local frame. */
#include "zigllama/zl_fault_guard.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>

typedef struct zl_fault_guard_frame {
    sigjmp_buf env;
} zl_fault_guard_frame;

/* initial-exec: a thread-local read in a signal handler must not allocate */
static __thread zl_fault_guard_frame *zl_fault_guard_current __attribute__((tls_model("initial-exec")));
static __thread int zl_fault_guard_thread_ready __attribute__((tls_model("initial-exec")));
static struct sigaction zl_fault_guard_previous;

static void zl_fault_guard_handler(int sig, siginfo_t *info, void *uc) {
    zl_fault_guard_frame *frame = zl_fault_guard_current;
    if (frame != NULL) {
        zl_fault_guard_current = NULL;
        siglongjmp(frame->env, 1);
    }
    /* not a guarded read: what would have happened without us */
    if (zl_fault_guard_previous.sa_flags & SA_SIGINFO) {
        if (zl_fault_guard_previous.sa_sigaction != NULL) {
            zl_fault_guard_previous.sa_sigaction(sig, info, uc);
            return;
        }
    } else if (zl_fault_guard_previous.sa_handler != SIG_DFL && zl_fault_guard_previous.sa_handler != SIG_IGN) {
        zl_fault_guard_previous.sa_handler(sig);
        return;
    }
    /* SIG_DFL (or SIG_IGN, which cannot hold for a fault): die of the signal. A fault
       re-executes the read and faults again; a sent signal is raised again. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig);
}

int zl_fault_guard_install(void) {
    static int installed = 0;
    struct sigaction now, ours;
    if (installed) return 0;
    if (sigaction(SIGBUS, NULL, &now) != 0) return -1;
    memset(&ours, 0, sizeof ours);
    ours.sa_sigaction = zl_fault_guard_handler;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    zl_fault_guard_previous = now;
    if (sigaction(SIGBUS, &ours, NULL) != 0) return -1;
    installed = 1;
    return 0;
}

int zl_fault_guarded_call(zl_fault_guarded_fn fn, void *arg, int fault_status) {
    zl_fault_guard_frame frame;
    zl_fault_guard_frame *volatile outer = zl_fault_guard_current;
    if (!zl_fault_guard_thread_ready) {
        /* A pool's worker may run with signals blocked; a blocked SIGBUS from a fault
           kills the process whatever the handler. Unblock it once per thread. */
        sigset_t bus;
        sigemptyset(&bus);
        sigaddset(&bus, SIGBUS);
        pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
        zl_fault_guard_thread_ready = 1;
    }
    if (sigsetjmp(frame.env, 0) != 0) {
        /* jumped out of the handler: SIGBUS is still blocked in this thread */
        sigset_t bus;
        sigemptyset(&bus);
        sigaddset(&bus, SIGBUS);
        pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
        zl_fault_guard_current = outer;
        return fault_status;
    }
    zl_fault_guard_current = &frame;
    int rc = fn(arg);
    zl_fault_guard_current = outer;
    return rc;
}

typedef struct {
    const volatile uint8_t *p;
    uint64_t n;
} zl_fault_touch_args;

static int zl_fault_touch_fn(void *arg) {
    const zl_fault_touch_args *a = (const zl_fault_touch_args *)arg;
    uint8_t sink = 0;
    for (uint64_t i = 0; i < a->n; i += 4096) sink ^= a->p[i];
    if (a->n) sink ^= a->p[a->n - 1];
    (void)sink;
    return 0;
}

int zl_fault_touch(const void *p, uint64_t n) {
    zl_fault_touch_args a = {(const volatile uint8_t *)p, n};
    return zl_fault_guarded_call(zl_fault_touch_fn, &a, -1);
}

