/*
 * bot4.shm._native: lock-free primitives on a shared-memory segment and the
 * closed-path gate of a circuit breaker (_gate.inc), guarded calls (_guard.inc), and
 * the risk ledger's kernel (_ledger.inc).
 *
 * Everything here operates on 64-bit words of one writable buffer (the mmap of
 * the segment). Atomic operations use the GCC/Clang __atomic builtins, which
 * compile to single instructions on x86-64 and aarch64: a process killed at any
 * instant leaves every word either before or after an operation, never torn,
 * and never leaves anything locked.
 *
 * The breaker record layout and the config block layout are defined here and
 * exported as module constants; the Python layout reads them, so there is one
 * source of truth.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Breaker record: word offsets from the record start. */
enum {
    REC_STATUS = 0,      /* 0 empty, 1 ready */
    REC_NAME = 1,        /* 8 words: UTF-8 name, NUL padded */
    REC_NAME_WORDS = 8,
    REC_STATE = 9,       /* packed state word, see bot4/breaker/_word.py */
    REC_PERMITS = 10,    /* (seq << 32) | permits issued in that half-open episode */
    REC_SUCCESSES = 11,  /* (seq << 32) | trial successes in that episode */
    REC_CONSEC = 12,     /* consecutive failures, shared by all workers */
    REC_WGEN = 13,       /* window generation: bumping it empties the window */
    REC_CFG_GEN = 14,    /* config generation; active block = gen & 1 */
    REC_CFG_LOCK = 15,   /* owner identity of the config writer lock */
    REC_TRIPS = 16,      /* number of transitions into OPEN */
    REC_REJECTS = 17,    /* number of rejected calls */
    REC_CHANGED_NS = 18, /* clock time of the last transition */
    REC_LAST_BAD = 19,   /* window tag of the latest failure or slow call (successes check the rates while it is in the window) */
    REC_CAUSE_PID = 20,  /* pid of the process that last opened the breaker */
    REC_TICKET = 21,     /* count-based window: calls ever recorded (the next call's ticket) */
    REC_TICKET_BASE = 22, /* count-based window: first ticket of the current window (emptying it moves this) */
    REC_LAST_BAD_TICKET = 23, /* count-based window: ticket + 1 of the latest failure or slow call */
    REC_CAUSE = 56,      /* why it last opened: tag (state seq; negative while written), then UTF-8 text */
    REC_CAUSE_WORDS = 8,
    REC_CFG0 = 24,       /* config block 0 */
    REC_CFG_WORDS = 16,
    REC_ENTERED = 64,    /* 5 words: transitions into each state (BreakerState order) */
    REC_TRIAL_CALLS = 69, /* trial calls admitted in half-open, ever */
    REC_TRIAL_FAILS = 70, /* trial calls that failed (or were slow and counted so), ever */
    REC_SUCCESS_TOTAL = 71, /* calls recorded as successes, ever (all processes; for metrics) */
    REC_FAILURE_TOTAL = 72, /* calls recorded as failures, ever */
    REC_SLOW_TOTAL = 73,  /* recorded calls that were slow, ever */
    REC_WORDS = 80
};

/* Count-based window: each breaker has a ring of RING_WORDS entries, (ticket + 1) << 2 | slow << 1 | failed. */
enum { RING_WORDS = 1024 };

/* Config block: word offsets. f = float64 bits, i = int64. */
enum {
    CFG_FAILURE_RATE = 0,     /* f */
    CFG_MINIMUM_CALLS = 1,    /* i */
    CFG_WINDOW_NS = 2,        /* i */
    CFG_BUCKET_NS = 3,        /* i */
    CFG_CONSECUTIVE = 4,      /* i, 0 = off */
    CFG_SLOW_NS = 5,          /* i, 0 = off */
    CFG_SLOW_RATE = 6,        /* f */
    CFG_OPEN_NS = 7,          /* i */
    CFG_OPEN_BACKOFF = 8,     /* f */
    CFG_MAX_OPEN_NS = 9,      /* i */
    CFG_HALF_OPEN_CALLS = 10, /* i */
    CFG_HALF_OPEN_MAX_NS = 11, /* i */
    CFG_SLOW_TRIAL_FAILS = 12, /* i: 1 = a slow trial call in half-open reopens like a failed one */
    CFG_WINDOW_CALLS = 13     /* i: 0 = the time window; n = the window is the last n calls */
};

/* Breaker states as stored in the low 3 bits of the state word (bot4/breaker/state.py). */
enum { STATE_CLOSED = 0, STATE_OPEN = 1 };

/* Window cell: per (breaker, slot, bucket). */
enum { CELL_TAG = 0, CELL_CALLS = 1, CELL_FAILURES = 2, CELL_SLOW = 3, CELL_WORDS = 4 };

/* Verdicts returned by Gate.success / Gate.failure. */
enum { VERDICT_NONE = 0, VERDICT_SLOW = 1, VERDICT_CONSECUTIVE = 2, VERDICT_RATE = 3 };

#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

static inline double bits_to_double(int64_t v) { double d; memcpy(&d, &v, sizeof d); return d; }
static inline int64_t double_to_bits(double d) { int64_t v; memcpy(&v, &d, sizeof v); return v; }

static inline int64_t monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ------------------------------------------------------------------ Region */

/* The error raised on a released region: bot4.SegmentError once bot4 registered it. */
static PyObject *released_error = NULL, *config_error = NULL, *state_error = NULL, *lock_timeout_error = NULL;

/* Raise cls(first, message) when bot4 registered cls (set_errors), else ValueError(message). */
static void raise_bot4(PyObject *cls, const char *first, const char *message) {
    if (cls) {
        PyObject *args = Py_BuildValue("(ss)", first, message);
        if (args) { PyErr_SetObject(cls, args); Py_DECREF(args); }
    } else {
        PyErr_SetString(PyExc_ValueError, message);
    }
}

static void raise_released(void) { raise_bot4(released_error, "", "the segment is closed in this process"); }

/* A region is usable while `held`. release() while a native call is inside the mapping
 * (`busy` > 0: a wait with the GIL released, or a Python callback such as a clock) only
 * marks it closing: the buffer (and so the mapping) is given back by the last call to
 * leave, so no call ever touches unmapped memory. */
typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int64_t *words;
    Py_ssize_t nwords;
    int held;      /* usable: not released */
    int buffered;  /* the buffer is still held (the mapping stays) */
    Py_ssize_t busy;
} Region;

static void region_drop(Region *self) {
    if (self->buffered) { PyBuffer_Release(&self->view); self->buffered = 0; }
    self->held = 0; self->words = NULL; self->nwords = 0;
}

/* Enter/leave a section that may let other threads run (GIL released, Python called). */
static inline void region_enter(Region *self) { self->busy++; }
static inline void region_leave(Region *self) {
    if (--self->busy == 0 && !self->held && self->buffered) region_drop(self);
}

static int region_init(Region *self, PyObject *args, PyObject *kw) {
    PyObject *obj;
    if (!PyArg_ParseTuple(args, "O", &obj)) return -1;
    if (self->buffered) {
        PyErr_SetString(PyExc_TypeError, "a Region is initialised once");
        return -1;
    }
    if (PyObject_GetBuffer(obj, &self->view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return -1;
    self->buffered = 1;
    if (((uintptr_t)self->view.buf) % 8 != 0) {
        region_drop(self);
        PyErr_SetString(PyExc_ValueError, "buffer is not 8-byte aligned");
        return -1;
    }
    self->held = 1;
    self->words = (int64_t *)self->view.buf;
    self->nwords = self->view.len / 8;
    return 0;
}

static void region_dealloc(Region *self) {
    region_drop(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static inline int region_check(Region *self, Py_ssize_t i) {
    if (!self->held) { raise_released(); return -1; }
    if (i < 0 || i >= self->nwords) {
        PyErr_Format(PyExc_ValueError, "word index %zd outside the segment (0..%zd)", i, self->nwords - 1);
        return -1;
    }
    return 0;
}

static int parse_index(PyObject *o, Py_ssize_t *out) {
    *out = PyLong_AsSsize_t(o);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static int parse_i64(PyObject *o, int64_t *out) {
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    *out = (int64_t)v;
    return 0;
}

static PyObject *region_load(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t i;
    if (n != 1) { PyErr_SetString(PyExc_TypeError, "load(index)"); return NULL; }
    if (parse_index(args[0], &i) < 0 || region_check(self, i) < 0) return NULL;
    return PyLong_FromLongLong(LOAD(&self->words[i]));
}

static PyObject *region_store(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t i; int64_t v;
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "store(index, value)"); return NULL; }
    if (parse_index(args[0], &i) < 0 || parse_i64(args[1], &v) < 0 || region_check(self, i) < 0) return NULL;
    STORE(&self->words[i], v);
    Py_RETURN_NONE;
}

static PyObject *region_cas(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t i; int64_t expected, desired;
    if (n != 3) { PyErr_SetString(PyExc_TypeError, "cas(index, expected, desired)"); return NULL; }
    if (parse_index(args[0], &i) < 0 || parse_i64(args[1], &expected) < 0 ||
        parse_i64(args[2], &desired) < 0 || region_check(self, i) < 0) return NULL;
    int ok = __atomic_compare_exchange_n(&self->words[i], &expected, desired, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    return PyBool_FromLong(ok);
}

static PyObject *region_add(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t i; int64_t delta;
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "add(index, delta)"); return NULL; }
    if (parse_index(args[0], &i) < 0 || parse_i64(args[1], &delta) < 0 || region_check(self, i) < 0) return NULL;
    return PyLong_FromLongLong(__atomic_add_fetch(&self->words[i], delta, __ATOMIC_ACQ_REL));
}

static PyObject *region_loadf(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t i;
    if (n != 1) { PyErr_SetString(PyExc_TypeError, "loadf(index)"); return NULL; }
    if (parse_index(args[0], &i) < 0 || region_check(self, i) < 0) return NULL;
    return PyFloat_FromDouble(bits_to_double(LOAD(&self->words[i])));
}

/* addf(i, *deltas) -> None: adds deltas[k] to the float64 word i + k, each atomically (compare-and-swap). */
static PyObject *region_addf(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t i;
    double d[8];
    if (n < 2 || n > 9) { PyErr_SetString(PyExc_TypeError, "addf(index, delta, ...): 1 to 8 deltas"); return NULL; }
    if (parse_index(args[0], &i) < 0) return NULL;
    for (Py_ssize_t k = 1; k < n; k++) {
        d[k - 1] = PyFloat_AsDouble(args[k]); /* may run Python code: check the region after */
        if (d[k - 1] == -1.0 && PyErr_Occurred()) return NULL;
    }
    if (region_check(self, i) < 0 || region_check(self, i + n - 2) < 0) return NULL;
    for (Py_ssize_t k = 0; k < n - 1; k++) {
        int64_t *p = &self->words[i + k];
        int64_t old = LOAD(p);
        while (!__atomic_compare_exchange_n(p, &old, double_to_bits(bits_to_double(old) + d[k]), 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        }
    }
    Py_RETURN_NONE;
}

static PyObject *region_storef(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t i;
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "storef(index, value)"); return NULL; }
    if (parse_index(args[0], &i) < 0) return NULL;
    double d = PyFloat_AsDouble(args[1]); /* may run Python code: check the region after */
    if ((d == -1.0 && PyErr_Occurred()) || region_check(self, i) < 0) return NULL;
    STORE(&self->words[i], double_to_bits(d));
    Py_RETURN_NONE;
}

static PyObject *region_release(Region *self, PyObject *unused) {
    self->held = 0;
    if (self->busy == 0) region_drop(self);
    Py_RETURN_NONE;
}

static PyObject *region_get_busy(Region *self, void *closure) { return PyLong_FromSsize_t(self->busy); }

/* Whether words [i, i + count) lie in the region (raises otherwise). */
static int region_span(Region *self, Py_ssize_t i, Py_ssize_t count) {
    if (region_check(self, i) < 0) return -1;
    if (count < 0 || count > self->nwords - i) {
        PyErr_Format(PyExc_ValueError, "%zd words from word %zd run outside the segment (%zd words)", count, i,
                     self->nwords);
        return -1;
    }
    return 0;
}

/* put(i, v0, v1, ...): atomic stores of words i, i+1, ... (a float as its bits, an int as is). */
#define PUT_MAX 32
static PyObject *region_put(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t i;
    int64_t values[PUT_MAX];
    if (n < 2 || n - 1 > PUT_MAX) { PyErr_SetString(PyExc_TypeError, "put(index, value, ...): 1 to 32 values"); return NULL; }
    if (parse_index(args[0], &i) < 0) return NULL;
    for (Py_ssize_t k = 1; k < n; k++) {
        PyObject *v = args[k];
        if (PyFloat_CheckExact(v)) {
            values[k - 1] = double_to_bits(PyFloat_AS_DOUBLE(v));
        } else if (PyLong_CheckExact(v)) {
            long long x = PyLong_AsLongLong(v);
            if (x == -1 && PyErr_Occurred()) return NULL;
            values[k - 1] = (int64_t)x;
        } else {
            PyErr_Format(PyExc_TypeError, "put: value %zd is %s, not a float or an int", k, Py_TYPE(v)->tp_name);
            return NULL;
        }
    }
    if (region_span(self, i, n - 1) < 0) return NULL;
    for (Py_ssize_t k = 0; k < n - 1; k++) STORE(&self->words[i + k], values[k]);
    Py_RETURN_NONE;
}


/* seq_put(lock, ident, seq, i, v0, v1, ...) -> int: a seqlocked write of words i, i+1, ... (None:
 * a word left as it is) by the holder of the writer lock word `lock`. The lock is taken from 0 by
 * compare-and-swap (held by `ident` already: ours, left by a write of ours that stopped half-way);
 * held by another, nothing is written and that holder is returned (the caller decides whether it is
 * dead and takes it over). Else the seq word goes odd (a half-done write found odd is completed by
 * this one), the words are stored, seq goes even, the lock is given back, and 0 is returned. */
static PyObject *region_seq_put(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t lock, seq, i;
    int64_t ident, values[PUT_MAX];
    char keep[PUT_MAX];
    if (n < 5 || n - 4 > PUT_MAX) {
        PyErr_SetString(PyExc_TypeError, "seq_put(lock, ident, seq, index, value, ...): 1 to 32 values");
        return NULL;
    }
    if (parse_index(args[0], &lock) < 0 || parse_i64(args[1], &ident) < 0 || parse_index(args[2], &seq) < 0 ||
        parse_index(args[3], &i) < 0) return NULL;
    if (ident == 0) { PyErr_SetString(PyExc_ValueError, "seq_put: ident must not be 0"); return NULL; }
    for (Py_ssize_t k = 4; k < n; k++) {
        PyObject *v = args[k];
        keep[k - 4] = 0;
        if (v == Py_None) {
            keep[k - 4] = 1;
            values[k - 4] = 0;
        } else if (PyFloat_CheckExact(v)) {
            values[k - 4] = double_to_bits(PyFloat_AS_DOUBLE(v));
        } else if (PyLong_CheckExact(v)) {
            long long x = PyLong_AsLongLong(v);
            if (x == -1 && PyErr_Occurred()) return NULL;
            values[k - 4] = (int64_t)x;
        } else {
            PyErr_Format(PyExc_TypeError, "seq_put: value %zd is %s, not a float, an int or None", k - 3,
                         Py_TYPE(v)->tp_name);
            return NULL;
        }
    }
    if (region_check(self, lock) < 0 || region_check(self, seq) < 0 || region_span(self, i, n - 4) < 0) return NULL;
    int64_t holder = 0;
    if (!__atomic_compare_exchange_n(&self->words[lock], &holder, ident, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE) &&
        holder != ident)
        return PyLong_FromLongLong(holder);
    int64_t s = LOAD(&self->words[seq]);
    if (!(s & 1)) STORE(&self->words[seq], ++s);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (Py_ssize_t k = 0; k < n - 4; k++)
        if (!keep[k]) STORE(&self->words[i + k], values[k]);
    STORE(&self->words[seq], s + 1);
    int64_t mine = ident;
    __atomic_compare_exchange_n(&self->words[lock], &mine, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    return PyLong_FromLong(0);
}

/* load_range(i, n) -> tuple[int]; loadf_range(i, n) -> tuple[float]: n consecutive words. */
static PyObject *region_range(Region *self, PyObject *const *args, Py_ssize_t n, int as_float) {
    Py_ssize_t i, count;
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "expected (index, count)"); return NULL; }
    if (parse_index(args[0], &i) < 0 || parse_index(args[1], &count) < 0) return NULL;
    if (region_span(self, i, count) < 0) return NULL;
    PyObject *out = PyTuple_New(count);
    if (!out) return NULL;
    for (Py_ssize_t k = 0; k < count; k++) {
        int64_t v = LOAD(&self->words[i + k]);
        PyObject *item = as_float ? PyFloat_FromDouble(bits_to_double(v)) : PyLong_FromLongLong(v);
        if (!item) { Py_DECREF(out); return NULL; }
        PyTuple_SET_ITEM(out, k, item);
    }
    return out;
}

static PyObject *region_load_range(Region *self, PyObject *const *args, Py_ssize_t n) {
    return region_range(self, args, n, 0);
}

static PyObject *region_loadf_range(Region *self, PyObject *const *args, Py_ssize_t n) {
    return region_range(self, args, n, 1);
}

/* tagged_sum(i, pairs, lo, hi) -> int: sum of the values of the (tag, value) pairs at word i
 * whose tag is in (lo, hi]. */
static PyObject *region_tagged_sum(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t i, pairs; int64_t lo, hi;
    if (n != 4) { PyErr_SetString(PyExc_TypeError, "tagged_sum(index, pairs, lo, hi)"); return NULL; }
    if (parse_index(args[0], &i) < 0 || parse_index(args[1], &pairs) < 0 || parse_i64(args[2], &lo) < 0 ||
        parse_i64(args[3], &hi) < 0)
        return NULL;
    if (pairs < 0 || pairs > PY_SSIZE_T_MAX / 2 || region_span(self, i, 2 * pairs) < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad pair count");
        return NULL;
    }
    int64_t total = 0;
    for (Py_ssize_t k = 0; k < pairs; k++) {
        int64_t tag = LOAD(&self->words[i + 2 * k]);
        if (tag > lo && tag <= hi) total = (int64_t)((uint64_t)total + (uint64_t)LOAD(&self->words[i + 2 * k + 1]));
    }
    return PyLong_FromLongLong(total);
}

/* ---- robust process-shared mutex: the OS hands it on when its holder dies ---- */

#define MUTEX_WORDS ((sizeof(pthread_mutex_t) + 7) / 8)

static pthread_mutex_t *region_mutex(Region *self, PyObject *index_obj) {
    Py_ssize_t i;
    if (parse_index(index_obj, &i) < 0 || region_span(self, i, (Py_ssize_t)MUTEX_WORDS) < 0) return NULL;
    return (pthread_mutex_t *)&self->words[i];
}

/* The mutex at index_obj while the mapping is still there, closed or not (to unlock). */
static pthread_mutex_t *region_mutex_mapped(Region *self, PyObject *index_obj) {
    Py_ssize_t i;
    if (parse_index(index_obj, &i) < 0) return NULL;
    if (!self->buffered) { raise_released(); return NULL; }
    if (i < 0 || i > self->view.len / 8 - (Py_ssize_t)MUTEX_WORDS) {
        PyErr_SetString(PyExc_ValueError, "mutex outside the segment");
        return NULL;
    }
    return (pthread_mutex_t *)((int64_t *)self->view.buf + i);
}

static PyObject *region_mutex_init(Region *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 1) { PyErr_SetString(PyExc_TypeError, "mutex_init(index)"); return NULL; }
    pthread_mutex_t *m = region_mutex(self, args[0]);
    if (!m) return NULL;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    int rc = pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) { errno = rc; return PyErr_SetFromErrno(PyExc_OSError); }
    Py_RETURN_NONE;
}

/* mutex_lock(index, timeout_seconds) -> MUTEX_ACQUIRED, MUTEX_FROM_DEAD (the holder died:
 * made consistent, repair what it left), MUTEX_TIMEOUT, MUTEX_UNRECOVERABLE (a holder died
 * between EOWNERDEAD and consistent: re-initialise it), or MUTEX_OWN (this thread holds it
 * already: a section it left without unlocking). The GIL is released while waiting; a
 * region closed meanwhile gives the mutex straight back and raises. Holding the mutex
 * counts as a call inside the mapping until mutex_unlock: a close() meanwhile cannot unmap
 * the mutex from under its holder (which would leave it locked for every process). */
enum { MUTEX_ACQUIRED = 0, MUTEX_FROM_DEAD = 1, MUTEX_TIMEOUT = -1, MUTEX_UNRECOVERABLE = 2, MUTEX_OWN = 3 };

/* The body of mutex_lock on a checked mutex: a MUTEX_* code, or -100 with an exception set. */
static int mutex_acquire(Region *self, pthread_mutex_t *m, double timeout) {
    /* The first attempt is a timed lock with a deadline already past, not trylock: glibc's
     * trylock on a not-recoverable robust mutex returns ENOTRECOVERABLE but leaves the lock
     * word holding the caller, while its timed lock gives it back. */
    static const struct timespec past = {0, 0};
    int rc = pthread_mutex_timedlock(m, &past);
    if (rc == ETIMEDOUT) rc = EBUSY;
    if (rc == EBUSY && timeout > 0) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = (int64_t)until.tv_nsec + (int64_t)(timeout * 1e9);
        until.tv_sec += (time_t)(ns / 1000000000LL);
        until.tv_nsec = (long)(ns % 1000000000LL);
        region_enter(self);
        Py_BEGIN_ALLOW_THREADS
        rc = pthread_mutex_timedlock(m, &until);
        Py_END_ALLOW_THREADS
        if (!self->held) { /* closed by another thread while we waited: give it straight back */
            if (rc == EOWNERDEAD) pthread_mutex_consistent(m);
            if (rc == 0 || rc == EOWNERDEAD) pthread_mutex_unlock(m);
            region_leave(self);
            raise_released();
            return -100;
        }
        if (rc != 0 && rc != EOWNERDEAD) region_leave(self);
    } else if (rc == 0 || rc == EOWNERDEAD) {
        region_enter(self);
    }
    switch (rc) {
    case 0: return MUTEX_ACQUIRED;
    case EOWNERDEAD:
        if (pthread_mutex_consistent(m) != 0) {
            pthread_mutex_unlock(m);
            region_leave(self);
            return MUTEX_UNRECOVERABLE;
        }
        return MUTEX_FROM_DEAD;
    case EBUSY: case ETIMEDOUT: return MUTEX_TIMEOUT;
    case ENOTRECOVERABLE: return MUTEX_UNRECOVERABLE;
    case EDEADLK: return MUTEX_OWN;
    default: {
        char message[160];
        snprintf(message, sizeof message, "the ledger mutex is unusable: %s", strerror(rc));
        raise_bot4(state_error, "", message);
        return -100;
    }
    }
}

static int parse_timeout(PyObject *o, double *out) {
    *out = PyFloat_AsDouble(o);
    if (*out == -1.0 && PyErr_Occurred()) return -1;
    if (!(*out >= 0.0) || *out > 1e6) {
        PyErr_SetString(PyExc_ValueError, "timeout must be a number of seconds in 0..1e6");
        return -1;
    }
    return 0;
}

static PyObject *region_mutex_lock(Region *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "mutex_lock(index, timeout)"); return NULL; }
    double timeout;
    if (parse_timeout(args[1], &timeout) < 0) return NULL;
    pthread_mutex_t *m = region_mutex(self, args[0]);
    if (!m) return NULL;
    int code = mutex_acquire(self, m, timeout);
    return code == -100 ? NULL : PyLong_FromLong(code);
}

/* Unlock a mutex this thread holds (the region stays mapped while it is held); 0, or -1 with
 * an exception set. */
static int mutex_release(Region *self, pthread_mutex_t *m, int *was_held) {
    int rc = pthread_mutex_unlock(m);
    *was_held = rc == 0;
    if (rc == EPERM) return 0;
    if (rc != 0) { errno = rc; PyErr_SetFromErrno(PyExc_OSError); return -1; }
    region_leave(self); /* may unmap: a close() waited for this */
    return 0;
}

/* mutex_unlock(index) -> bool: False when this thread did not hold it (nothing done). */
static PyObject *region_mutex_unlock(Region *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 1) { PyErr_SetString(PyExc_TypeError, "mutex_unlock(index)"); return NULL; }
    pthread_mutex_t *m = region_mutex_mapped(self, args[0]);
    int was_held;
    if (!m || mutex_release(self, m, &was_held) < 0) return NULL;
    return PyBool_FromLong(was_held);
}

/* ---- redo journal: multi-word updates that a crash cannot tear ----
 * Journal at word j: [j] committed count (0: empty), [j+1] capacity, then (index, value)
 * pairs. stage() writes the pairs, publish() sets the count (the commit point), applies the
 * writes, then clears the count. Whoever finds a non-zero count replays it: applying
 * absolute values twice is harmless. */

/* The journal's capacity in pairs, checked against the region (its words are shared). */
static int64_t journal_capacity(Region *self, Py_ssize_t j) {
    if (region_span(self, j, 2) < 0) return -1;
    int64_t capacity = self->words[j + 1];
    if (capacity < 0 || capacity > (self->nwords - j - 2) / 2) {
        raise_bot4(state_error, "", "the ledger journal's capacity word is corrupt");
        return -1;
    }
    return capacity;
}

static int apply_journal(Region *self, Py_ssize_t j) {
    int64_t capacity = journal_capacity(self, j);
    if (capacity < 0) return -1;
    int64_t count = LOAD(&self->words[j]);
    if (count < 0 || count > capacity) { raise_bot4(state_error, "", "the ledger journal is corrupt"); return -1; }
    for (int64_t k = 0; k < count; k++) {
        int64_t index = self->words[j + 2 + 2 * k];
        if (index < 0 || index >= self->nwords) { raise_bot4(state_error, "", "the ledger journal is corrupt"); return -1; }
    }
    for (int64_t k = 0; k < count; k++) STORE(&self->words[self->words[j + 2 + 2 * k]], self->words[j + 3 + 2 * k]);
    STORE(&self->words[j], 0);
    return (int)count;
}

static inline int check_staged(Region *self, Py_ssize_t j, Py_ssize_t n, Py_ssize_t width) {
    int64_t capacity = journal_capacity(self, j);
    if (capacity < 0) return -1;
    if (n < 0 || width < 0 || n > capacity - width) {
        PyErr_Format(PyExc_ValueError, "transaction exceeds the journal (%lld pairs)", (long long)capacity);
        return -1;
    }
    return 0;
}

/* Stage one write (value: int, float, or a tuple of them for consecutive words) as pair
 * number n of the journal at word j; return the next n. Staged pairs are invisible until
 * publish(): under the ledger mutex only one process stages at a time. */
static Py_ssize_t stage_value(Region *self, Py_ssize_t j, Py_ssize_t n, Py_ssize_t index, PyObject *v) {
    int run = PyTuple_Check(v);
    Py_ssize_t width = run ? PyTuple_GET_SIZE(v) : 1;
    for (Py_ssize_t w = 0; w < width; w++) {
        PyObject *item = run ? PyTuple_GET_ITEM(v, w) : v;
        int64_t value;
        if (PyFloat_Check(item)) {
            value = double_to_bits(PyFloat_AS_DOUBLE(item));
        } else if (parse_i64(item, &value) < 0) { /* may run Python code: check the region after */
            return -1;
        }
        if (check_staged(self, j, n, 1) < 0 || region_check(self, index) < 0 || index > self->nwords - 1 - w ||
            region_check(self, index + w) < 0)
            return -1;
        self->words[j + 2 + 2 * n] = index + w;
        self->words[j + 3 + 2 * n] = value;
        n++;
    }
    return n;
}

static inline int stage_raw(Region *self, Py_ssize_t j, Py_ssize_t *n, Py_ssize_t index, int64_t value) {
    if (check_staged(self, j, *n, 1) < 0 || region_check(self, index) < 0) return -1;
    self->words[j + 2 + 2 * *n] = index;
    self->words[j + 3 + 2 * *n] = value;
    (*n)++;
    return 0;
}

static PyObject *region_stage(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t j, count, index;
    if (n != 4) { PyErr_SetString(PyExc_TypeError, "stage(journal, n, index, value)"); return NULL; }
    if (parse_index(args[0], &j) < 0 || parse_index(args[1], &count) < 0 || parse_index(args[2], &index) < 0)
        return NULL;
    Py_ssize_t next = stage_value(self, j, count, index, args[3]);
    return next < 0 ? NULL : PyLong_FromSsize_t(next);
}

/* publish(journal, n, version): the commit point (count = n), then apply and clear. With
 * version >= 0, the word there is a sequence lock over every transaction: odd while the
 * writes are being applied, the next even value once they all are (the final pair). The
 * holder replays any journal a dead holder left (replay()) before it stages anything. */
static int journal_publish(Region *self, Py_ssize_t j, Py_ssize_t count, Py_ssize_t version) {
    if (check_staged(self, j, count, 0) < 0) return -1;
    if (count == 0) return 0;
    int64_t next = 0;
    if (version >= 0) {
        if (region_check(self, version) < 0) return -1;
        next = (LOAD(&self->words[version]) | 1) + 1;
        if (stage_raw(self, j, &count, version, next) < 0) return -1;
    }
    STORE(&self->words[j], (int64_t)count);
    if (version >= 0) STORE(&self->words[version], next - 1);
    return apply_journal(self, j) < 0 ? -1 : 0;
}

static PyObject *region_publish(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t j, count, version;
    if (n != 3) { PyErr_SetString(PyExc_TypeError, "publish(journal, n, version)"); return NULL; }
    if (parse_index(args[0], &j) < 0 || parse_index(args[1], &count) < 0 || parse_index(args[2], &version) < 0)
        return NULL;
    if (journal_publish(self, j, count, version) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *region_replay(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t j;
    if (n != 1) { PyErr_SetString(PyExc_TypeError, "replay(journal)"); return NULL; }
    if (parse_index(args[0], &j) < 0 || region_span(self, j, 2) < 0) return NULL;
    if (LOAD(&self->words[j]) == 0) return PyLong_FromLong(0);
    int count = apply_journal(self, j);
    return count < 0 ? NULL : PyLong_FromLong(count);
}

static PyMethodDef region_methods[] = {
    {"load", (PyCFunction)(void (*)(void))region_load, METH_FASTCALL, "load(i) -> int: atomic load of word i."},
    {"put", (PyCFunction)(void (*)(void))region_put, METH_FASTCALL,
     "put(i, v0, v1, ...): atomic stores of words i, i+1, ... (floats as their bits, ints as they are)."},
    {"store", (PyCFunction)(void (*)(void))region_store, METH_FASTCALL, "store(i, v): atomic store of word i."},
    {"seq_put", (PyCFunction)(void (*)(void))region_seq_put, METH_FASTCALL,
     "seq_put(lock, ident, seq, i, v0, ...) -> int: a seqlocked write under a writer lock word (0: done; else its holder)."},
    {"cas", (PyCFunction)(void (*)(void))region_cas, METH_FASTCALL,
     "cas(i, expected, desired) -> bool: atomic compare-and-swap of word i."},
    {"add", (PyCFunction)(void (*)(void))region_add, METH_FASTCALL, "add(i, delta) -> int: atomic add, returns the new value."},
    {"loadf", (PyCFunction)(void (*)(void))region_loadf, METH_FASTCALL, "loadf(i) -> float: word i as float64."},
    {"addf", (PyCFunction)(void (*)(void))region_addf, METH_FASTCALL, "addf(i, *deltas): atomic float64 adds to words i, i+1, ..."},
    {"storef", (PyCFunction)(void (*)(void))region_storef, METH_FASTCALL, "storef(i, v): store float64 v in word i."},
    {"release", (PyCFunction)region_release, METH_NOARGS, "Release the buffer."},
    {"load_range", (PyCFunction)(void (*)(void))region_load_range, METH_FASTCALL,
     "load_range(i, n) -> tuple[int]: n consecutive words."},
    {"loadf_range", (PyCFunction)(void (*)(void))region_loadf_range, METH_FASTCALL,
     "loadf_range(i, n) -> tuple[float]: n consecutive words as float64."},
    {"tagged_sum", (PyCFunction)(void (*)(void))region_tagged_sum, METH_FASTCALL,
     "tagged_sum(i, pairs, lo, hi) -> int: sum of values of (tag, value) pairs with lo < tag <= hi."},
    {"mutex_init", (PyCFunction)(void (*)(void))region_mutex_init, METH_FASTCALL,
     "mutex_init(i): a robust process-shared mutex at word i."},
    {"mutex_lock", (PyCFunction)(void (*)(void))region_mutex_lock, METH_FASTCALL,
     "mutex_lock(i, timeout) -> one of MUTEX_ACQUIRED, MUTEX_FROM_DEAD, MUTEX_TIMEOUT, MUTEX_UNRECOVERABLE, MUTEX_OWN."},
    {"mutex_unlock", (PyCFunction)(void (*)(void))region_mutex_unlock, METH_FASTCALL,
     "mutex_unlock(i) -> bool: False when this thread did not hold it."},
    {"stage", (PyCFunction)(void (*)(void))region_stage, METH_FASTCALL,
     "stage(journal, n, index, value | (values...)) -> n: stage writes in the journal (not yet visible)."},
    {"publish", (PyCFunction)(void (*)(void))region_publish, METH_FASTCALL,
     "publish(journal, n, version): commit the n staged writes (and bump the word at version if >= 0)."},
    {"replay", (PyCFunction)(void (*)(void))region_replay, METH_FASTCALL,
     "replay(journal) -> int: finish a committed but unfinished transaction."},
    {NULL}
};

static PyMemberDef region_members[] = {
    {"nwords", T_PYSSIZET, offsetof(Region, nwords), READONLY, "Number of 64-bit words."},
    {NULL}
};

static PyGetSetDef region_getset[] = {
    {"busy", (getter)region_get_busy, NULL, "Native calls inside the mapping now (waits, callbacks).", NULL},
    {NULL}
};

static PyTypeObject RegionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot4.shm._native.Region",
    .tp_basicsize = sizeof(Region),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Region(buffer): 64-bit atomic words over a writable buffer.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)region_init,
    .tp_dealloc = (destructor)region_dealloc,
    .tp_methods = region_methods,
    .tp_members = region_members,
    .tp_getset = region_getset,
};

/* ------------------------------------------------------------------ Section */

/* A critical section over the ledger mutex with its journal: `with section as tx:`.
 * __enter__ and __exit__ are native, so no bytecode runs between taking the mutex and the
 * start of the protected block, nor between the end of the block and the hand-back: an
 * asynchronous exception (Ctrl-C) cannot leave the mutex held. The Python subclass
 * (bot4.shm.mutex.SharedMutex) supplies _reinitialise() and _taken_back(). */
typedef struct {
    PyObject_HEAD
    Region *region;
    Py_ssize_t mutex, journal, version, holder;
    double timeout;
    Py_ssize_t staged;  /* journal pairs staged by the section in progress */
    long long ident;    /* this process's identity, written to the holder word while it holds the mutex */
    Py_ssize_t ev_ring, ev_cap, ev_sym0, ev_sym_words; /* the event ring (bind_events); ev_ring -1: none */
    Py_ssize_t ev_account[8], ev_fields[4]; /* EV_POST_ACCOUNT_WORDS, EV_POST_SYMBOL_WORDS */
    Py_ssize_t ev_account_lo, ev_account_hi; /* the range of ev_account's words */
} Section;

static int section_init(Section *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"region", "mutex", "journal", "version", "holder", "ident", "timeout", NULL};
    Region *region; Py_ssize_t mutex, journal, version, holder; long long ident; double timeout;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!nnnnLd", kwlist, &RegionType, &region, &mutex, &journal, &version,
                                     &holder, &ident, &timeout))
        return -1;
    if (!(timeout >= 0.0) || timeout > 1e6) {
        PyErr_SetString(PyExc_ValueError, "timeout must be a number of seconds in 0..1e6"); return -1;
    }
    if (region_span(region, mutex, (Py_ssize_t)MUTEX_WORDS) < 0 || journal_capacity(region, journal) < 0 ||
        (version >= 0 && region_check(region, version) < 0) || region_check(region, holder) < 0)
        return -1;
    if (holder >= mutex && holder < mutex + (Py_ssize_t)MUTEX_WORDS) {
        PyErr_SetString(PyExc_ValueError, "the holder word overlaps the mutex"); return -1;
    }
    Py_INCREF(region); Py_XSETREF(self->region, region);
    self->mutex = mutex; self->journal = journal; self->version = version < 0 ? -1 : version;
    self->timeout = timeout; self->staged = 0; self->holder = holder; self->ident = ident;
    self->ev_ring = -1;
    return 0;
}

static void section_dealloc(Section *self) {
    Py_CLEAR(self->region);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *section_enter(Section *self, PyObject *unused) {
    Region *r = self->region;
    if (!r->held) { raise_released(); return NULL; }
    pthread_mutex_t *m = (pthread_mutex_t *)&r->words[self->mutex];
    int code = mutex_acquire(r, m, self->timeout);
    for (int tries = 0; code == MUTEX_UNRECOVERABLE && tries < 3; tries++) {
        PyObject *done = PyObject_CallMethod((PyObject *)self, "_reinitialise", NULL);
        if (!done) return NULL;
        Py_DECREF(done);
        if (!r->held) { raise_released(); return NULL; }
        code = mutex_acquire(r, m, self->timeout);
    }
    if (code == MUTEX_OWN && LOAD(&r->words[self->holder]) != self->ident) {
        /* The OS says this thread holds it, yet another process does: a thread of another PID
         * namespace with our thread id (ids are per namespace). Wait for it as for any holder. */
        int64_t deadline = monotonic_ns() + (int64_t)(self->timeout * 1e9);
        while (code == MUTEX_OWN && monotonic_ns() < deadline) {
            struct timespec pause = {0, 200000};
            region_enter(r);
            Py_BEGIN_ALLOW_THREADS
            nanosleep(&pause, NULL);
            Py_END_ALLOW_THREADS
            int closed = !r->held;
            region_leave(r);
            if (closed) { raise_released(); return NULL; }
            code = mutex_acquire(r, m, 0.0);
            if (code == MUTEX_TIMEOUT) code = MUTEX_OWN; /* busy again: keep waiting */
        }
        if (code == MUTEX_OWN) code = MUTEX_TIMEOUT;
    }
    if (code == -100) return NULL;
    if (code == MUTEX_TIMEOUT) {
        char message[160];
        snprintf(message, sizeof message, "the risk ledger lock was held by a live process for over %gs", self->timeout);
        if (lock_timeout_error) PyErr_SetString(lock_timeout_error, message);
        else PyErr_SetString(PyExc_TimeoutError, message);
        return NULL;
    }
    if (code == MUTEX_UNRECOVERABLE) {
        raise_bot4(state_error, "", "the risk ledger mutex stays unrecoverable after re-initialisation");
        return NULL;
    }
    if (code == MUTEX_OWN) {
        PyObject *done = PyObject_CallMethod((PyObject *)self, "_taken_back", NULL);
        if (!done) goto release;
        Py_DECREF(done);
    }
    if (LOAD(&r->words[self->journal]) != 0 && apply_journal(r, self->journal) < 0) goto release;
    STORE(&r->words[self->holder], self->ident);
    self->staged = 0;
    Py_INCREF(self);
    return (PyObject *)self;
release: {
        PyObject *type, *value, *tb;
        int was_held;
        PyErr_Fetch(&type, &value, &tb);
        mutex_release(r, m, &was_held);
        PyErr_Restore(type, value, tb);
        return NULL;
    }
}

/* __exit__(type, value, tb): publish what was staged when the block did not raise, then
 * unlock whatever happened. */
static PyObject *section_exit(Section *self, PyObject *const *args, Py_ssize_t n) {
    Region *r = self->region;
    if (!r->buffered) { raise_released(); return NULL; }
    pthread_mutex_t *m = (pthread_mutex_t *)((int64_t *)r->view.buf + self->mutex);
    int failed = 0;
    if (n >= 1 && args[0] == Py_None && self->staged > 0)
        failed = journal_publish(r, self->journal, self->staged, self->version) < 0;
    self->staged = 0;
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    if (failed) PyErr_Fetch(&type, &value, &tb);
    int64_t *holder = (int64_t *)r->view.buf + self->holder;
    if (LOAD(holder) == self->ident) STORE(holder, 0);
    int was_held;
    if (mutex_release(r, m, &was_held) < 0) {
        Py_XDECREF(type); Py_XDECREF(value); Py_XDECREF(tb);
        return NULL;
    }
    if (failed) { PyErr_Restore(type, value, tb); return NULL; }
    Py_RETURN_FALSE;
}

/* set(index, value): stage a write (int, float, or a tuple for consecutive words) of this section. */
static PyObject *section_set(Section *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t index;
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "set(index, value)"); return NULL; }
    if (parse_index(args[0], &index) < 0) return NULL;
    Py_ssize_t next = stage_value(self->region, self->journal, self->staged, index, args[1]);
    if (next < 0) return NULL;
    self->staged = next;
    Py_RETURN_NONE;
}

static PyObject *section_len(Section *self, PyObject *unused) { return PyLong_FromSsize_t(self->staged); }

#include "_events.inc"

static PyMethodDef section_methods[] = {
    {"__enter__", (PyCFunction)section_enter, METH_NOARGS, "Take the mutex (bounded wait), replay a dead holder's journal."},
    {"__exit__", (PyCFunction)(void (*)(void))section_exit, METH_FASTCALL,
     "Publish the staged writes unless the block raised; release the mutex."},
    {"set", (PyCFunction)(void (*)(void))section_set, METH_FASTCALL,
     "set(index, value): write value (int, float, or a tuple for consecutive words) at index on commit."},
    {"__len__", (PyCFunction)section_len, METH_NOARGS, "Journal pairs staged so far."},
    {"bind_events", (PyCFunction)(void (*)(void))section_bind_events, METH_FASTCALL,
     "bind_events(ring, capacity, account, symbols, symbol_words, symbol_fields): the event ring and the words a record copies."},
    {"record", (PyCFunction)(void (*)(void))section_record, METH_FASTCALL,
     "record(kind, ref, symbol, code, f0, f1, f2, f3, text) -> position, -1 (full: counted lost), -2 (no journal)."},
    {NULL}
};

static PyMemberDef section_members[] = {
    {"staged", T_PYSSIZET, offsetof(Section, staged), 0, "Journal pairs staged by the section in progress."},
    {"region", T_OBJECT, offsetof(Section, region), READONLY, "The region."},
    {"timeout", T_DOUBLE, offsetof(Section, timeout), READONLY, "Seconds to wait for a live holder."},
    {"ident", T_LONGLONG, offsetof(Section, ident), 0, "This process's identity (a forked child sets its own)."},
    {NULL}
};

static PyTypeObject SectionType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot4.shm._native.Section",
    .tp_basicsize = sizeof(Section),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Section(region, mutex, journal, version, holder, ident, timeout): a critical section over a robust "
              "mutex and its journal.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)section_init,
    .tp_dealloc = (destructor)section_dealloc,
    .tp_methods = section_methods,
    .tp_members = section_members,
};

#include "_gate.inc"
#include "_guard.inc"
#include "_ledger.inc"

/* ------------------------------------------------------------------ module */

static PyObject *mod_monotonic_ns(PyObject *m, PyObject *unused) { return PyLong_FromLongLong(monotonic_ns()); }

static PyObject *mod_set_errors(PyObject *m, PyObject *const *args, Py_ssize_t n) {
    if (n != 4) { PyErr_SetString(PyExc_TypeError, "set_errors(released, config, state, lock_timeout)"); return NULL; }
    for (Py_ssize_t i = 0; i < 4; i++)
        if (!PyExceptionClass_Check(args[i])) { PyErr_SetString(PyExc_TypeError, "expected exception classes"); return NULL; }
    Py_INCREF(args[0]); Py_XSETREF(released_error, args[0]);
    Py_INCREF(args[1]); Py_XSETREF(config_error, args[1]);
    Py_INCREF(args[2]); Py_XSETREF(state_error, args[2]);
    Py_INCREF(args[3]); Py_XSETREF(lock_timeout_error, args[3]);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"monotonic_ns", (PyCFunction)mod_monotonic_ns, METH_NOARGS, "CLOCK_MONOTONIC in ns (host-wide)."},
    {"events_rows", (PyCFunction)(void (*)(void))mod_events_rows, METH_FASTCALL,
     "events_rows(region, ring, capacity, start, end, epoch, kinds, names, raw_kind) -> the journal rows of records start..end-1."},
    {"events_blocked", (PyCFunction)(void (*)(void))mod_events_blocked, METH_FASTCALL,
     "events_blocked(region, ring, capacity) -> EV_READY, or the EV_BLOCK_* code saying why new risk may not be taken."},
    {"set_errors", (PyCFunction)(void (*)(void))mod_set_errors, METH_FASTCALL,
     "set_errors(released, config, state, lock_timeout): the bot4 errors raised for a closed region, a bad clock "
     "reading, shared state found corrupt or torn (each called as cls(name_or_field, message)), and a lock wait "
     "that timed out (cls(message))."},
    {NULL}
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "bot4.shm._native", "Lock-free shared-memory primitives.", -1, module_methods
};

/* PyModule_AddObject that takes ownership of `value` either way (like 3.13's PyModule_Add). */
static int add_owned(PyObject *m, const char *name, PyObject *value) {
    if (!value) return -1;
    if (PyModule_AddObject(m, name, value) < 0) { Py_DECREF(value); return -1; }
    return 0;
}

#define ADD_INT(m, name) if (PyModule_AddIntConstant(m, #name, name) < 0) goto fail

PyMODINIT_FUNC PyInit__native(void) {
#ifdef Py_GIL_DISABLED
    /* Each worker slot's window cells have one writer because the GIL serialises this
     * process's native calls; without a GIL two threads would lose counts. */
    PyErr_SetString(PyExc_ImportError, "bot4 needs a CPython with the GIL (free-threaded builds are not supported)");
    return NULL;
#endif
    if (PyType_Ready(&RegionType) < 0 || PyType_Ready(&GateType) < 0 || PyType_Ready(&LedgerKernelType) < 0 ||
        PyType_Ready(&SectionType) < 0 || PyType_Ready(&GuardedType) < 0 || PyType_Ready(&GuardedCallType) < 0)
        return NULL;
    if (gate_init_strings() < 0) return NULL;
    ev_pid = getpid();
    if (pthread_atfork(NULL, NULL, ev_forked) != 0) { PyErr_SetString(PyExc_ImportError, "pthread_atfork failed"); return NULL; }
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&RegionType);
    if (PyModule_AddObject(m, "Region", (PyObject *)&RegionType) < 0) goto fail;
    Py_INCREF(&GateType);
    if (PyModule_AddObject(m, "Gate", (PyObject *)&GateType) < 0) goto fail;
    Py_INCREF(&LedgerKernelType);
    if (PyModule_AddObject(m, "LedgerKernel", (PyObject *)&LedgerKernelType) < 0) goto fail;
    Py_INCREF(&SectionType);
    if (PyModule_AddObject(m, "Section", (PyObject *)&SectionType) < 0) goto fail;
    Py_INCREF(&GuardedType);
    if (PyModule_AddObject(m, "Guarded", (PyObject *)&GuardedType) < 0) goto fail;
    Py_INCREF(&GuardedCallType);
    if (PyModule_AddObject(m, "GuardedCall", (PyObject *)&GuardedCallType) < 0) goto fail;
    /* The order of LedgerKernel's offset and limit tuples, and of evaluate()'s bits. */
    if (add_owned(m, "LEDGER_OFFSETS",
                     Py_BuildValue("(ssssssssssssssssss)", "cash", "unrealized", "peak", "day_start", "gross",
                                   "equity_set", "trading", "open_orders", "hold_gen", "rate", "limits_gen", "limits",
                                   "symbols_used", "corr_gen", "res_high", "res_seq", "free_head", "day_id")) < 0 ||
        add_owned(m, "LEDGER_LIMITS",
                     Py_BuildValue("(sssssssssssss)", "require_stop_loss", "max_stop_distance", "max_position_risk",
                                   "max_position_notional", "max_correlation", "max_drawdown", "daily_loss_limit",
                                   "max_gross_exposure", "max_symbol_exposure", "max_open_orders",
                                   "max_orders_per_second", "correlation_min_samples", "max_price_age")) < 0 ||
        add_owned(m, "LEDGER_RULES",
                     Py_BuildValue("(ssssssss)", "trading_state", "stop_loss", "position_size", "correlation", "account",
                                   "exposure", "order_flow", "stale_price")) < 0 ||
        add_owned(m, "LEDGER_CODES",
                  Py_BuildValue("((ss)(ss)(ss)(ss)(ss)(ss)(ss)(ss)(ss)(ss)(ss)(ss)(ss)(ss)(ss)(ss)(ss)(ss))",
                                "trading_state", "KILL_SWITCH", "trading_state", "REDUCING_ONLY",
                                "trading_state", "REDUCE_ONLY_INCREASES", "stop_loss", "STOP_LOSS_MISSING",
                                "stop_loss", "STOP_LOSS_WRONG_SIDE", "stop_loss", "STOP_LOSS_TOO_FAR",
                                "position_size", "PRICE_UNKNOWN", "position_size", "POSITION_RISK",
                                "position_size", "POSITION_NOTIONAL", "correlation", "CORRELATION",
                                "account", "EQUITY_UNKNOWN", "account", "DRAWDOWN_LIMIT", "account", "DAILY_LOSS_LIMIT",
                                "exposure", "SYMBOL_EXPOSURE", "exposure", "GROSS_EXPOSURE",
                                "order_flow", "OPEN_ORDERS", "order_flow", "ORDER_RATE", "stale_price", "STALE_PRICE")) < 0)
        goto fail;
    ADD_INT(m, REC_STATUS); ADD_INT(m, REC_NAME); ADD_INT(m, REC_NAME_WORDS); ADD_INT(m, REC_STATE);
    ADD_INT(m, REC_PERMITS); ADD_INT(m, REC_SUCCESSES); ADD_INT(m, REC_CONSEC); ADD_INT(m, REC_WGEN);
    ADD_INT(m, REC_CFG_GEN); ADD_INT(m, REC_CFG_LOCK); ADD_INT(m, REC_TRIPS); ADD_INT(m, REC_REJECTS);
    ADD_INT(m, REC_CHANGED_NS); ADD_INT(m, REC_LAST_BAD);
    ADD_INT(m, REC_TICKET); ADD_INT(m, REC_TICKET_BASE); ADD_INT(m, REC_LAST_BAD_TICKET); ADD_INT(m, REC_ENTERED);
    ADD_INT(m, REC_TRIAL_CALLS); ADD_INT(m, REC_TRIAL_FAILS); ADD_INT(m, REC_SUCCESS_TOTAL); ADD_INT(m, REC_FAILURE_TOTAL); ADD_INT(m, REC_SLOW_TOTAL); ADD_INT(m, RING_WORDS);
    ADD_INT(m, REC_CAUSE_PID); ADD_INT(m, REC_CAUSE); ADD_INT(m, REC_CAUSE_WORDS); ADD_INT(m, REC_CFG0); ADD_INT(m, REC_CFG_WORDS); ADD_INT(m, REC_WORDS);
    ADD_INT(m, CFG_FAILURE_RATE); ADD_INT(m, CFG_MINIMUM_CALLS); ADD_INT(m, CFG_WINDOW_NS);
    ADD_INT(m, CFG_BUCKET_NS); ADD_INT(m, CFG_CONSECUTIVE); ADD_INT(m, CFG_SLOW_NS); ADD_INT(m, CFG_SLOW_RATE);
    ADD_INT(m, CFG_OPEN_NS); ADD_INT(m, CFG_OPEN_BACKOFF); ADD_INT(m, CFG_MAX_OPEN_NS);
    ADD_INT(m, CFG_HALF_OPEN_CALLS); ADD_INT(m, CFG_HALF_OPEN_MAX_NS); ADD_INT(m, CFG_SLOW_TRIAL_FAILS); ADD_INT(m, CFG_WINDOW_CALLS);
    ADD_INT(m, CELL_TAG); ADD_INT(m, CELL_CALLS); ADD_INT(m, CELL_FAILURES); ADD_INT(m, CELL_SLOW);
    ADD_INT(m, CELL_WORDS);
    ADD_INT(m, EV_HEAD); ADD_INT(m, EV_TAIL); ADD_INT(m, EV_LOST); ADD_INT(m, EV_ON); ADD_INT(m, EV_BEAT_NS);
    ADD_INT(m, EV_RECORDER); ADD_INT(m, EV_ERROR); ADD_INT(m, EV_RECOVERING); ADD_INT(m, EV_LOST_SEEN);
    ADD_INT(m, EV_EPOCH); ADD_INT(m, EV_ERROR_TEXT); ADD_INT(m, EV_ERROR_WORDS); ADD_INT(m, EV_HEADER_WORDS);
    ADD_INT(m, EV_RECOVERY_LOCK); ADD_INT(m, EV_STOPPED); ADD_INT(m, EV_MISSED); ADD_INT(m, EV_PATH); ADD_INT(m, EV_PATH_WORDS);
    ADD_INT(m, EV_KIND); ADD_INT(m, EV_TIME_NS); ADD_INT(m, EV_PID); ADD_INT(m, EV_REF); ADD_INT(m, EV_SYMBOL);
    ADD_INT(m, EV_CODE); ADD_INT(m, EV_F0); ADD_INT(m, EV_FLOATS); ADD_INT(m, EV_POST_SYMBOL);
    ADD_INT(m, EV_POST_SYMBOL_WORDS); ADD_INT(m, EV_POST_ACCOUNT); ADD_INT(m, EV_POST_ACCOUNT_WORDS);
    ADD_INT(m, EV_TEXT); ADD_INT(m, EV_TEXT_WORDS); ADD_INT(m, EV_WORDS);
    ADD_INT(m, EV_READY); ADD_INT(m, EV_BLOCK_RECOVERING); ADD_INT(m, EV_BLOCK_ERROR); ADD_INT(m, EV_BLOCK_RECORDER);
    ADD_INT(m, EV_BLOCK_LOST); ADD_INT(m, EV_BLOCK_BEHIND); ADD_INT(m, EV_RECORDER_TIMEOUT_NS); ADD_INT(m, EV_ROOM_DIVISOR);
    if (PyModule_AddIntConstant(m, "MUTEX_WORDS", (long)MUTEX_WORDS) < 0) goto fail;
    ADD_INT(m, MUTEX_ACQUIRED); ADD_INT(m, MUTEX_FROM_DEAD); ADD_INT(m, MUTEX_TIMEOUT); ADD_INT(m, MUTEX_UNRECOVERABLE);
    ADD_INT(m, MUTEX_OWN);
    ADD_INT(m, VERDICT_NONE); ADD_INT(m, VERDICT_SLOW); ADD_INT(m, VERDICT_CONSECUTIVE); ADD_INT(m, VERDICT_RATE);
    if (add_owned(m, "LIMIT_TOLERANCE", PyFloat_FromDouble(LIMIT_TOLERANCE)) < 0) goto fail;
    if (add_owned(m, "LIMIT_EPSILON", PyFloat_FromDouble(LIMIT_EPS)) < 0) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
