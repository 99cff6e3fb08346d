/*
 * bot4.shm._native: lock-free primitives on a shared-memory segment and the
 * closed-path gate of a circuit breaker.
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
    REC_CFG0 = 24,       /* config block 0 */
    REC_CFG_WORDS = 16,
    REC_WORDS = 64
};

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
    CFG_HALF_OPEN_MAX_NS = 11 /* i */
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
static PyObject *released_error = NULL;

static void raise_released(void) {
    if (released_error) {
        PyObject *args = Py_BuildValue("(ss)", "", "the segment is closed in this process");
        if (args) { PyErr_SetObject(released_error, args); Py_DECREF(args); }
    } else {
        PyErr_SetString(PyExc_ValueError, "the segment is closed in this process");
    }
}

typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int64_t *words;
    Py_ssize_t nwords;
    int held;
} Region;

static int region_init(Region *self, PyObject *args, PyObject *kw) {
    PyObject *obj;
    if (!PyArg_ParseTuple(args, "O", &obj)) return -1;
    if (self->held) { PyBuffer_Release(&self->view); self->held = 0; }
    if (PyObject_GetBuffer(obj, &self->view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return -1;
    self->held = 1;
    if (((uintptr_t)self->view.buf) % 8 != 0) {
        PyErr_SetString(PyExc_ValueError, "buffer is not 8-byte aligned");
        return -1;
    }
    self->words = (int64_t *)self->view.buf;
    self->nwords = self->view.len / 8;
    return 0;
}

static void region_dealloc(Region *self) {
    if (self->held) PyBuffer_Release(&self->view);
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

static PyObject *region_storef(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t i;
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "storef(index, value)"); return NULL; }
    if (parse_index(args[0], &i) < 0 || region_check(self, i) < 0) return NULL;
    double d = PyFloat_AsDouble(args[1]);
    if (d == -1.0 && PyErr_Occurred()) return NULL;
    STORE(&self->words[i], double_to_bits(d));
    Py_RETURN_NONE;
}

static PyObject *region_release(Region *self, PyObject *unused) {
    if (self->held) { PyBuffer_Release(&self->view); self->held = 0; self->words = NULL; self->nwords = 0; }
    Py_RETURN_NONE;
}

/* load_range(i, n) -> tuple[int]; loadf_range(i, n) -> tuple[float]: n consecutive words. */
static PyObject *region_range(Region *self, PyObject *const *args, Py_ssize_t n, int as_float) {
    Py_ssize_t i, count;
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "expected (index, count)"); return NULL; }
    if (parse_index(args[0], &i) < 0 || parse_index(args[1], &count) < 0) return NULL;
    if (count < 0 || region_check(self, i) < 0 || (count > 0 && region_check(self, i + count - 1) < 0)) return NULL;
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
    if (pairs < 0 || region_check(self, i) < 0 || (pairs > 0 && region_check(self, i + 2 * pairs - 1) < 0)) return NULL;
    int64_t total = 0;
    for (Py_ssize_t k = 0; k < pairs; k++) {
        int64_t tag = LOAD(&self->words[i + 2 * k]);
        if (tag > lo && tag <= hi) total += LOAD(&self->words[i + 2 * k + 1]);
    }
    return PyLong_FromLongLong(total);
}

/* ---- robust process-shared mutex: the OS hands it on when its holder dies ---- */

#define MUTEX_WORDS ((sizeof(pthread_mutex_t) + 7) / 8)

static pthread_mutex_t *region_mutex(Region *self, PyObject *index_obj) {
    Py_ssize_t i;
    if (parse_index(index_obj, &i) < 0 || region_check(self, i) < 0) return NULL;
    if (i + (Py_ssize_t)MUTEX_WORDS > self->nwords) {
        PyErr_SetString(PyExc_ValueError, "mutex does not fit in the segment");
        return NULL;
    }
    return (pthread_mutex_t *)&self->words[i];
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

/* mutex_lock(index, timeout_seconds) -> 0 acquired, 1 acquired from a dead holder,
 * -1 timed out. The GIL is released while waiting. */
static PyObject *region_mutex_lock(Region *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 2) { PyErr_SetString(PyExc_TypeError, "mutex_lock(index, timeout)"); return NULL; }
    pthread_mutex_t *m = region_mutex(self, args[0]);
    if (!m) return NULL;
    double timeout = PyFloat_AsDouble(args[1]);
    if (timeout == -1.0 && PyErr_Occurred()) return NULL;
    int rc = pthread_mutex_trylock(m);
    if (rc == EBUSY) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = (int64_t)until.tv_nsec + (int64_t)(timeout * 1e9);
        until.tv_sec += (time_t)(ns / 1000000000LL);
        until.tv_nsec = (long)(ns % 1000000000LL);
        Py_BEGIN_ALLOW_THREADS
        rc = pthread_mutex_timedlock(m, &until);
        Py_END_ALLOW_THREADS
    }
    if (rc == 0) return PyLong_FromLong(0);
    if (rc == EOWNERDEAD) {
        pthread_mutex_consistent(m);
        return PyLong_FromLong(1);
    }
    if (rc == ETIMEDOUT) return PyLong_FromLong(-1);
    errno = rc;
    return PyErr_SetFromErrno(PyExc_OSError);
}

static PyObject *region_mutex_unlock(Region *self, PyObject *const *args, Py_ssize_t n) {
    if (n != 1) { PyErr_SetString(PyExc_TypeError, "mutex_unlock(index)"); return NULL; }
    pthread_mutex_t *m = region_mutex(self, args[0]);
    if (!m) return NULL;
    int rc = pthread_mutex_unlock(m);
    if (rc != 0) { errno = rc; return PyErr_SetFromErrno(PyExc_OSError); }
    Py_RETURN_NONE;
}

/* ---- redo journal: multi-word updates that a crash cannot tear ----
 * Journal at word j: [j] committed count (0: empty), [j+1] capacity, then (index, value)
 * pairs. stage() writes the pairs, publish() sets the count (the commit point), applies the
 * writes, then clears the count. Whoever finds a non-zero count replays it: applying
 * absolute values twice is harmless. */

static int apply_journal(Region *self, Py_ssize_t j) {
    int64_t count = LOAD(&self->words[j]);
    for (int64_t k = 0; k < count; k++) {
        int64_t index = self->words[j + 2 + 2 * k];
        if (index < 0 || index >= self->nwords) return -1;
        STORE(&self->words[index], self->words[j + 3 + 2 * k]);
    }
    STORE(&self->words[j], 0);
    return (int)count;
}

/* Stage one write (value: int, float, or a tuple of them for consecutive words) as pair
 * number n of the journal at word j; return the next n. Staged pairs are invisible until
 * publish(): under the ledger mutex only one process stages at a time. */
static Py_ssize_t stage_value(Region *self, Py_ssize_t j, Py_ssize_t n, Py_ssize_t index, PyObject *v) {
    int run = PyTuple_Check(v);
    Py_ssize_t width = run ? PyTuple_GET_SIZE(v) : 1;
    int64_t capacity = self->words[j + 1];
    if (n + width > capacity || j + 2 + 2 * (n + width) > self->nwords) {
        PyErr_Format(PyExc_ValueError, "transaction exceeds the journal (%lld words)", (long long)capacity);
        return -1;
    }
    for (Py_ssize_t w = 0; w < width; w++) {
        PyObject *item = run ? PyTuple_GET_ITEM(v, w) : v;
        int64_t value;
        if (region_check(self, index + w) < 0) return -1;
        if (PyFloat_Check(item)) {
            value = double_to_bits(PyFloat_AS_DOUBLE(item));
        } else if (parse_i64(item, &value) < 0) {
            return -1;
        }
        self->words[j + 2 + 2 * n] = index + w;
        self->words[j + 3 + 2 * n] = value;
        n++;
    }
    return n;
}

static inline int stage_raw(Region *self, Py_ssize_t j, Py_ssize_t *n, Py_ssize_t index, int64_t value) {
    if (*n + 1 > self->words[j + 1]) {
        PyErr_SetString(PyExc_ValueError, "transaction exceeds the journal");
        return -1;
    }
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
    if (region_check(self, j) < 0 || region_check(self, j + 1) < 0) return NULL;
    Py_ssize_t next = stage_value(self, j, count, index, args[3]);
    return next < 0 ? NULL : PyLong_FromSsize_t(next);
}

/* publish(journal, n, version): the commit point (count = n), then apply and clear. With
 * version >= 0, the word there is bumped by the same transaction. The holder replays any
 * journal a dead holder left (replay()) before it stages anything. */
static PyObject *region_publish(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t j, count, version;
    if (n != 3) { PyErr_SetString(PyExc_TypeError, "publish(journal, n, version)"); return NULL; }
    if (parse_index(args[0], &j) < 0 || parse_index(args[1], &count) < 0) return NULL;
    version = PyLong_AsSsize_t(args[2]);
    if (version == -1 && PyErr_Occurred()) return NULL;
    if (region_check(self, j) < 0 || region_check(self, j + 1) < 0) return NULL;
    if (count < 0 || count > self->words[j + 1]) { PyErr_SetString(PyExc_ValueError, "bad journal count"); return NULL; }
    if (count == 0) Py_RETURN_NONE;
    if (version >= 0) {
        if (region_check(self, version) < 0) return NULL;
        if (stage_raw(self, j, &count, version, LOAD(&self->words[version]) + 1) < 0) return NULL;
    }
    STORE(&self->words[j], (int64_t)count);
    if (apply_journal(self, j) < 0) { PyErr_SetString(PyExc_ValueError, "corrupt journal"); return NULL; }
    Py_RETURN_NONE;
}

static PyObject *region_replay(Region *self, PyObject *const *args, Py_ssize_t n) {
    Py_ssize_t j;
    if (n != 1) { PyErr_SetString(PyExc_TypeError, "replay(journal)"); return NULL; }
    if (parse_index(args[0], &j) < 0 || region_check(self, j) < 0) return NULL;
    if (LOAD(&self->words[j]) == 0) return PyLong_FromLong(0);
    int count = apply_journal(self, j);
    if (count < 0) { PyErr_SetString(PyExc_ValueError, "corrupt journal"); return NULL; }
    return PyLong_FromLong(count);
}

static PyMethodDef region_methods[] = {
    {"load", (PyCFunction)(void (*)(void))region_load, METH_FASTCALL, "load(i) -> int: atomic load of word i."},
    {"store", (PyCFunction)(void (*)(void))region_store, METH_FASTCALL, "store(i, v): atomic store of word i."},
    {"cas", (PyCFunction)(void (*)(void))region_cas, METH_FASTCALL,
     "cas(i, expected, desired) -> bool: atomic compare-and-swap of word i."},
    {"add", (PyCFunction)(void (*)(void))region_add, METH_FASTCALL, "add(i, delta) -> int: atomic add, returns the new value."},
    {"loadf", (PyCFunction)(void (*)(void))region_loadf, METH_FASTCALL, "loadf(i) -> float: word i as float64."},
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
     "mutex_lock(i, timeout) -> 0 acquired, 1 acquired from a dead holder, -1 timed out."},
    {"mutex_unlock", (PyCFunction)(void (*)(void))region_mutex_unlock, METH_FASTCALL, "mutex_unlock(i)."},
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
};

/* -------------------------------------------------------------------- Gate */

typedef struct {
    PyObject_HEAD
    Region *region;
    PyObject *clock;        /* None: CLOCK_MONOTONIC; else callable returning ns */
    int64_t *rec;           /* breaker record */
    int64_t *cells;         /* window cells of this breaker: [slot][bucket][CELL_WORDS] */
    int64_t *fuse;          /* fuse state word */
    int64_t *high_water;    /* number of slots ever claimed */
    Py_ssize_t slot;
    Py_ssize_t max_slots;
    Py_ssize_t buckets;
} Gate;

typedef struct {
    double failure_rate, slow_rate;
    int64_t minimum_calls, bucket_ns, consecutive, slow_ns;
} HotConfig;

static inline void read_config(const int64_t *rec, HotConfig *c) {
    for (;;) {
        int64_t g1 = LOAD(&rec[REC_CFG_GEN]);
        const int64_t *b = rec + REC_CFG0 + (g1 & 1) * REC_CFG_WORDS;
        c->failure_rate = bits_to_double(LOAD(&b[CFG_FAILURE_RATE]));
        c->minimum_calls = LOAD(&b[CFG_MINIMUM_CALLS]);
        c->bucket_ns = LOAD(&b[CFG_BUCKET_NS]);
        c->consecutive = LOAD(&b[CFG_CONSECUTIVE]);
        c->slow_ns = LOAD(&b[CFG_SLOW_NS]);
        c->slow_rate = bits_to_double(LOAD(&b[CFG_SLOW_RATE]));
        if (LOAD(&rec[REC_CFG_GEN]) == g1) break;
    }
    if (c->bucket_ns <= 0) c->bucket_ns = 1;
}

static inline int64_t gate_now(Gate *self, int *err) {
    *err = 0;
    if (self->clock == Py_None) return monotonic_ns();
    PyObject *r = PyObject_CallNoArgs(self->clock);
    if (!r) { *err = 1; return 0; }
    long long v = PyLong_AsLongLong(r);
    Py_DECREF(r);
    if (v == -1 && PyErr_Occurred()) { *err = 1; return 0; }
    return (int64_t)v;
}

#define TAG(gen, idx) (((gen) << 40) | ((idx) & ((1LL << 40) - 1)))

/* Sum the window over every claimed slot: calls, failures, slow. */
static void window_sum(Gate *self, int64_t now, const HotConfig *c, int64_t out[3]) {
    int64_t gen = LOAD(&self->rec[REC_WGEN]);
    int64_t cur = now / c->bucket_ns;
    int64_t first = cur - self->buckets + 1;
    if (first < 0) first = 0;
    int64_t hi = TAG(gen, cur), lo = TAG(gen, first);
    Py_ssize_t nslots = (Py_ssize_t)LOAD(self->high_water);
    if (nslots > self->max_slots) nslots = self->max_slots;
    out[0] = out[1] = out[2] = 0;
    for (Py_ssize_t s = 0; s < nslots; s++) {
        int64_t *row = self->cells + s * self->buckets * CELL_WORDS;
        for (Py_ssize_t b = 0; b < self->buckets; b++) {
            int64_t *cell = row + b * CELL_WORDS;
            int64_t tag = LOAD(&cell[CELL_TAG]);
            if (tag < lo || tag > hi) continue;
            out[0] += LOAD(&cell[CELL_CALLS]);
            out[1] += LOAD(&cell[CELL_FAILURES]);
            out[2] += LOAD(&cell[CELL_SLOW]);
        }
    }
}

/* Single writer: only this process writes the cells of its slot. The cell is
 * zeroed before its tag is set, so a crash mid-roll leaves a cell that readers
 * ignore (old tag) or that counts zero, never stale counts under a new tag. */
static inline int64_t *own_cell(Gate *self, int64_t now, const HotConfig *c) {
    int64_t gen = LOAD(&self->rec[REC_WGEN]);
    int64_t idx = now / c->bucket_ns;
    int64_t tag = TAG(gen, idx);
    int64_t *cell = self->cells + (self->slot * self->buckets + (idx % self->buckets)) * CELL_WORDS;
    if (LOAD(&cell[CELL_TAG]) != tag) {
        STORE(&cell[CELL_CALLS], 0);
        STORE(&cell[CELL_FAILURES], 0);
        STORE(&cell[CELL_SLOW], 0);
        STORE(&cell[CELL_TAG], tag);
    }
    return cell;
}

static inline void bump(int64_t *p) { STORE(p, LOAD(p) + 1); }

static int rate_verdict(Gate *self, int64_t now, const HotConfig *c, int check_failures, int check_slow) {
    int64_t sums[3];
    window_sum(self, now, c, sums);
    if (sums[0] <= 0 || sums[0] < c->minimum_calls) return VERDICT_NONE;
    if (check_failures && (double)sums[1] >= c->failure_rate * (double)sums[0]) return VERDICT_RATE;
    if (check_slow && (double)sums[2] >= c->slow_rate * (double)sums[0]) return VERDICT_SLOW;
    return VERDICT_NONE;
}

/* acquire() -> start time (ns, >= 0) when the closed fast path applies; -2 - remaining_ns
 * when the breaker is OPEN before its deadline (a certain rejection); -1 when the slow
 * path must decide. */
static PyObject *gate_acquire(Gate *self, PyObject *unused) {
    if (!self->region->held) return PyLong_FromLong(-1);
    int64_t word = LOAD(&self->rec[REC_STATE]);
    int64_t fuse = LOAD(self->fuse);
    int err;
    if ((word & 7) == 0 && fuse == 0) {
        int64_t now = gate_now(self, &err);
        if (err) return NULL;
        return PyLong_FromLongLong(now);
    }
    if ((word & 7) == STATE_OPEN) {
        /* The deadline is ms modulo 2^39 (see bot4/breaker/state.py): compare by difference. */
        const int64_t mask = (1LL << 39) - 1;
        int64_t now = gate_now(self, &err);
        if (err) return NULL;
        int64_t now_ms = now / 1000000LL;
        int64_t delta = (((word >> 24) & mask) - now_ms) & mask;
        if (delta >= (1LL << 38)) delta -= mask + 1;
        int64_t left = delta * 1000000LL - (now - now_ms * 1000000LL);
        if (left > 0) return PyLong_FromLongLong(-2 - left);
    }
    return PyLong_FromLong(-1);
}

/* Common start of success/failure: parse t0, read the clock and config, and count the
 * call in this slot's current cell. Returns the cell, NULL with *done set when there is
 * nothing to record (segment closed), NULL with an exception set on error. */
static int64_t *record_call(Gate *self, PyObject *const *args, Py_ssize_t n, int64_t *elapsed, int64_t *now,
                            HotConfig *c, int *done) {
    int64_t t0; int err;
    *done = 0;
    if (n != 1) { PyErr_SetString(PyExc_TypeError, "expected one argument: the start time"); return NULL; }
    if (parse_i64(args[0], &t0) < 0) return NULL;
    if (!self->region->held) { *done = 1; return NULL; }
    *now = gate_now(self, &err);
    if (err) return NULL;
    *elapsed = *now - t0;
    read_config(self->rec, c);
    int64_t *cell = own_cell(self, *now, c);
    bump(&cell[CELL_CALLS]);
    return cell;
}

/* success(t0) -> verdict: records a successful call; VERDICT_SLOW when slow calls cross their rate. */
static PyObject *gate_success(Gate *self, PyObject *const *args, Py_ssize_t n) {
    int64_t elapsed, now; HotConfig c; int done;
    int64_t *cell = record_call(self, args, n, &elapsed, &now, &c, &done);
    if (!cell) return done ? PyLong_FromLong(VERDICT_NONE) : NULL;
    if (LOAD(&self->rec[REC_CONSEC]) != 0) STORE(&self->rec[REC_CONSEC], 0);
    if (c.slow_ns > 0 && elapsed >= c.slow_ns) {
        bump(&cell[CELL_SLOW]);
        return PyLong_FromLong(rate_verdict(self, now, &c, 0, 1));
    }
    return PyLong_FromLong(VERDICT_NONE);
}

/* failure(t0) -> verdict: records a failed call and says whether a trip rule is met. */
static PyObject *gate_failure(Gate *self, PyObject *const *args, Py_ssize_t n) {
    int64_t elapsed, now; HotConfig c; int done;
    int64_t *cell = record_call(self, args, n, &elapsed, &now, &c, &done);
    if (!cell) return done ? PyLong_FromLong(VERDICT_NONE) : NULL;
    bump(&cell[CELL_FAILURES]);
    int slow = c.slow_ns > 0 && elapsed >= c.slow_ns;
    if (slow) bump(&cell[CELL_SLOW]);
    int64_t consec = __atomic_add_fetch(&self->rec[REC_CONSEC], 1, __ATOMIC_ACQ_REL);
    if (c.consecutive > 0 && consec >= c.consecutive) return PyLong_FromLong(VERDICT_CONSECUTIVE);
    return PyLong_FromLong(rate_verdict(self, now, &c, 1, slow));
}

/* counts() -> (calls, failures, slow) in the current window, all slots. */
static PyObject *gate_counts(Gate *self, PyObject *unused) {
    int err;
    if (!self->region->held) { raise_released(); return NULL; }
    int64_t now = gate_now(self, &err);
    if (err) return NULL;
    HotConfig c; read_config(self->rec, &c);
    int64_t sums[3];
    window_sum(self, now, &c, sums);
    return Py_BuildValue("(LLL)", (long long)sums[0], (long long)sums[1], (long long)sums[2]);
}

static PyObject *gate_now_py(Gate *self, PyObject *unused) {
    int err;
    int64_t now = gate_now(self, &err);
    if (err) return NULL;
    return PyLong_FromLongLong(now);
}

static int gate_init(Gate *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"region", "record", "cells", "fuse", "high_water", "slot", "max_slots",
                             "buckets", "clock", NULL};
    Region *region; Py_ssize_t record, cells, fuse, hw, slot, max_slots, buckets; PyObject *clock;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O!nnnnnnnO", kwlist, &RegionType, &region, &record, &cells,
                                     &fuse, &hw, &slot, &max_slots, &buckets, &clock))
        return -1;
    if (!region->held) { raise_released(); return -1; }
    if (buckets <= 0 || max_slots <= 0 || slot < 0 || slot >= max_slots) {
        PyErr_SetString(PyExc_ValueError, "bad gate geometry"); return -1;
    }
    Py_ssize_t cells_end = cells + max_slots * buckets * CELL_WORDS;
    if (record < 0 || record + REC_WORDS > region->nwords || cells < 0 || cells_end > region->nwords ||
        fuse < 0 || fuse >= region->nwords || hw < 0 || hw >= region->nwords) {
        PyErr_SetString(PyExc_ValueError, "gate offsets outside the segment"); return -1;
    }
    if (clock != Py_None && !PyCallable_Check(clock)) {
        PyErr_SetString(PyExc_TypeError, "clock must be None or a callable returning nanoseconds"); return -1;
    }
    Py_INCREF(region); Py_XSETREF(self->region, region);
    Py_INCREF(clock); Py_XSETREF(self->clock, clock);
    self->rec = region->words + record;
    self->cells = region->words + cells;
    self->fuse = region->words + fuse;
    self->high_water = region->words + hw;
    self->slot = slot;
    self->max_slots = max_slots;
    self->buckets = buckets;
    return 0;
}

static int gate_traverse(Gate *self, visitproc visit, void *arg) {
    Py_VISIT(self->region); Py_VISIT(self->clock); return 0;
}

static int gate_clear(Gate *self) { Py_CLEAR(self->region); Py_CLEAR(self->clock); return 0; }

static void gate_dealloc(Gate *self) {
    PyObject_GC_UnTrack(self);
    gate_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int gate_set_slot(Gate *self, PyObject *value, void *closure) {
    if (!value) { PyErr_SetString(PyExc_TypeError, "cannot delete slot"); return -1; }
    Py_ssize_t s = PyLong_AsSsize_t(value);
    if (s == -1 && PyErr_Occurred()) return -1;
    if (s < 0 || s >= self->max_slots) { PyErr_SetString(PyExc_ValueError, "slot out of range"); return -1; }
    self->slot = s;
    return 0;
}

static PyObject *gate_get_slot(Gate *self, void *closure) { return PyLong_FromSsize_t(self->slot); }

static PyGetSetDef gate_getset[] = {
    {"slot", (getter)gate_get_slot, (setter)gate_set_slot, "Worker slot whose window row this gate writes.", NULL},
    {NULL}
};

static PyMethodDef gate_methods[] = {
    {"acquire", (PyCFunction)gate_acquire, METH_NOARGS,
     "acquire() -> int: start time in ns on the closed fast path, -1 when the slow path must decide."},
    {"success", (PyCFunction)(void (*)(void))gate_success, METH_FASTCALL, "success(t0) -> verdict."},
    {"failure", (PyCFunction)(void (*)(void))gate_failure, METH_FASTCALL, "failure(t0) -> verdict."},
    {"counts", (PyCFunction)gate_counts, METH_NOARGS, "counts() -> (calls, failures, slow) in the window."},
    {"now", (PyCFunction)gate_now_py, METH_NOARGS, "now() -> int: the gate's clock in ns."},
    {NULL}
};

static PyTypeObject GateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "bot4.shm._native.Gate",
    .tp_basicsize = sizeof(Gate),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Gate(...): closed-path admission and outcome recording of one breaker for one worker slot.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)gate_init,
    .tp_dealloc = (destructor)gate_dealloc,
    .tp_traverse = (traverseproc)gate_traverse,
    .tp_clear = (inquiry)gate_clear,
    .tp_methods = gate_methods,
    .tp_getset = gate_getset,
};

#include "_ledger.inc"

/* ------------------------------------------------------------------ module */

static PyObject *mod_monotonic_ns(PyObject *m, PyObject *unused) { return PyLong_FromLongLong(monotonic_ns()); }

static PyObject *mod_set_released_error(PyObject *m, PyObject *cls) {
    if (!PyExceptionClass_Check(cls)) { PyErr_SetString(PyExc_TypeError, "expected an exception class"); return NULL; }
    Py_INCREF(cls);
    Py_XSETREF(released_error, cls);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"monotonic_ns", (PyCFunction)mod_monotonic_ns, METH_NOARGS, "CLOCK_MONOTONIC in ns (host-wide)."},
    {"set_released_error", (PyCFunction)mod_set_released_error, METH_O,
     "set_released_error(cls): raise cls(name, message) when a released region is used."},
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
    if (PyType_Ready(&RegionType) < 0 || PyType_Ready(&GateType) < 0 || PyType_Ready(&LedgerKernelType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&RegionType);
    if (PyModule_AddObject(m, "Region", (PyObject *)&RegionType) < 0) goto fail;
    Py_INCREF(&GateType);
    if (PyModule_AddObject(m, "Gate", (PyObject *)&GateType) < 0) goto fail;
    Py_INCREF(&LedgerKernelType);
    if (PyModule_AddObject(m, "LedgerKernel", (PyObject *)&LedgerKernelType) < 0) goto fail;
    /* The order of LedgerKernel's offset and limit tuples, and of evaluate()'s bits. */
    if (add_owned(m, "LEDGER_OFFSETS",
                     Py_BuildValue("(ssssssssssssssssss)", "cash", "unrealized", "peak", "day_start", "gross",
                                   "equity_set", "trading", "open_orders", "hold_gen", "rate", "limits_gen", "limits",
                                   "symbols_used", "corr_gen", "res_high", "res_seq", "free_head", "day_id")) < 0 ||
        add_owned(m, "LEDGER_LIMITS",
                     Py_BuildValue("(ssssssssssss)", "require_stop_loss", "max_stop_distance", "max_position_risk",
                                   "max_position_notional", "max_correlation", "max_drawdown", "daily_loss_limit",
                                   "max_gross_exposure", "max_symbol_exposure", "max_open_orders",
                                   "max_orders_per_second", "correlation_min_samples")) < 0 ||
        add_owned(m, "LEDGER_RULES",
                     Py_BuildValue("(sssssss)", "trading_state", "stop_loss", "position_size", "correlation", "account",
                                   "exposure", "order_flow")) < 0)
        goto fail;
    ADD_INT(m, REC_STATUS); ADD_INT(m, REC_NAME); ADD_INT(m, REC_NAME_WORDS); ADD_INT(m, REC_STATE);
    ADD_INT(m, REC_PERMITS); ADD_INT(m, REC_SUCCESSES); ADD_INT(m, REC_CONSEC); ADD_INT(m, REC_WGEN);
    ADD_INT(m, REC_CFG_GEN); ADD_INT(m, REC_CFG_LOCK); ADD_INT(m, REC_TRIPS); ADD_INT(m, REC_REJECTS);
    ADD_INT(m, REC_CHANGED_NS); ADD_INT(m, REC_CFG0); ADD_INT(m, REC_CFG_WORDS); ADD_INT(m, REC_WORDS);
    ADD_INT(m, CFG_FAILURE_RATE); ADD_INT(m, CFG_MINIMUM_CALLS); ADD_INT(m, CFG_WINDOW_NS);
    ADD_INT(m, CFG_BUCKET_NS); ADD_INT(m, CFG_CONSECUTIVE); ADD_INT(m, CFG_SLOW_NS); ADD_INT(m, CFG_SLOW_RATE);
    ADD_INT(m, CFG_OPEN_NS); ADD_INT(m, CFG_OPEN_BACKOFF); ADD_INT(m, CFG_MAX_OPEN_NS);
    ADD_INT(m, CFG_HALF_OPEN_CALLS); ADD_INT(m, CFG_HALF_OPEN_MAX_NS);
    ADD_INT(m, CELL_TAG); ADD_INT(m, CELL_CALLS); ADD_INT(m, CELL_FAILURES); ADD_INT(m, CELL_SLOW);
    ADD_INT(m, CELL_WORDS);
    if (PyModule_AddIntConstant(m, "MUTEX_WORDS", (long)MUTEX_WORDS) < 0) goto fail;
    ADD_INT(m, VERDICT_NONE); ADD_INT(m, VERDICT_SLOW); ADD_INT(m, VERDICT_CONSECUTIVE); ADD_INT(m, VERDICT_RATE);
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
