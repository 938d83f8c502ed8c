/*
 * C implementation of the log cleaner's fixed-memory key -> offset map (Kafka's
 * SkimpyOffsetMap); the Python reference and the documentation of the behaviour are in
 * compaction/offset_map.py, which loads this module when it was built.
 *
 * Table: one PyMem_Calloc'ed array of `nslots` slots of 24 bytes, allocated once:
 *
 *   bytes  0..15  SipHash-2-4-128 of the key under the map's 16-byte secret, stored as two
 *                 host-order uint64 words (= the reference output bytes on little-endian
 *                 hosts); all zeros = empty slot (a real all-zero digest becomes lo = 1)
 *   bytes 16..23  the offset, int64 in host byte order
 *
 * Linear probing from (lo % nslots). At most `capacity` = nslots * 9 / 10 slots are ever
 * used, so an empty slot always ends a probe. Keys are untrusted: any buffer of any length
 * (empty included) is only hashed, never stored or indexed into. Apart from the table and
 * the result objects, nothing is allocated; every method holds the GIL throughout.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define SLOT_BYTES 24
#define MIN_SLOTS 16
#define MAX_MEMORY_BYTES ((long long)1 << 40)
#define SECRET_BYTES 16

static PyObject *InvalidArgumentError = NULL;

/* ---- SipHash-2-4 with 128-bit output (the reference "siphash-128" variant) -------------- */

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                           \
    do {                                                                                   \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                          \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                             \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                             \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                          \
    } while (0)

static inline uint64_t
load_le64(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

/* The two 64-bit output words; the reference's 16 output bytes are lo, hi little-endian. */
static void
siphash128(uint64_t k0, uint64_t k1, const uint8_t *in, size_t len, uint64_t *lo, uint64_t *hi)
{
    uint64_t v0 = UINT64_C(0x736f6d6570736575) ^ k0;
    uint64_t v1 = UINT64_C(0x646f72616e646f6d) ^ k1 ^ 0xee;
    uint64_t v2 = UINT64_C(0x6c7967656e657261) ^ k0;
    uint64_t v3 = UINT64_C(0x7465646279746573) ^ k1;
    const uint8_t *end = in + (len - (len & 7));
    uint64_t b = (uint64_t)len << 56;

    for (; in != end; in += 8) {
        uint64_t m = load_le64(in);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)in[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xee;
    SIPROUND; SIPROUND; SIPROUND; SIPROUND;
    *lo = v0 ^ v1 ^ v2 ^ v3;
    v1 ^= 0xdd;
    SIPROUND; SIPROUND; SIPROUND; SIPROUND;
    *hi = v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the map ------------------------------------------------------------------------- */

typedef struct {
    uint64_t lo;
    uint64_t hi;
    int64_t offset;
} Slot;

typedef char slot_is_24_bytes[sizeof(Slot) == SLOT_BYTES ? 1 : -1];

typedef struct {
    PyObject_HEAD
    Slot *table;
    Py_ssize_t nslots;
    Py_ssize_t capacity;
    Py_ssize_t size;
    int64_t latest;
    uint64_t k0, k1;
} COffsetMap;

/* Hash a key (any object with the buffer protocol). 0, or -1 with TypeError/BufferError. */
static int
digest_key(COffsetMap *self, PyObject *key, uint64_t *lo, uint64_t *hi)
{
    Py_buffer view;
    if (PyBytes_CheckExact(key)) {
        siphash128(self->k0, self->k1, (const uint8_t *)PyBytes_AS_STRING(key),
                   (size_t)PyBytes_GET_SIZE(key), lo, hi);
    }
    else {
        if (!PyObject_CheckBuffer(key)) {
            PyErr_Format(PyExc_TypeError, "a key must be bytes-like, not %.100s",
                         Py_TYPE(key)->tp_name);
            return -1;
        }
        if (PyObject_GetBuffer(key, &view, PyBUF_SIMPLE) < 0)
            return -1;
        siphash128(self->k0, self->k1, (const uint8_t *)view.buf, (size_t)view.len, lo, hi);
        PyBuffer_Release(&view);
    }
    if (*lo == 0 && *hi == 0)
        *lo = 1; /* the all-zero digest marks an empty slot */
    return 0;
}

/* The slot holding the digest, or the empty slot where it would go. */
static inline Slot *
find_slot(COffsetMap *self, uint64_t lo, uint64_t hi)
{
    Py_ssize_t i = (Py_ssize_t)(lo % (uint64_t)self->nslots);
    for (;;) {
        Slot *s = &self->table[i];
        if ((s->lo == lo && s->hi == hi) || (s->lo == 0 && s->hi == 0))
            return s;
        if (++i == self->nslots)
            i = 0;
    }
}

/* An offset argument: an int in 0..2**63-1. 0, or -1 with TypeError/InvalidArgumentError. */
static int
parse_offset(PyObject *obj, int64_t *out)
{
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (v == -1 && !overflow && PyErr_Occurred())
        return -1;
    if (overflow || v < 0) {
        PyErr_SetString(InvalidArgumentError, "an offset must be in 0..2**63-1");
        return -1;
    }
    *out = (int64_t)v;
    return 0;
}

/* 1 put, 0 full (nothing changed), -1 error. */
static int
put_one(COffsetMap *self, PyObject *key, PyObject *offset_obj)
{
    uint64_t lo, hi;
    int64_t offset;
    if (parse_offset(offset_obj, &offset) < 0 || digest_key(self, key, &lo, &hi) < 0)
        return -1;
    Slot *s = find_slot(self, lo, hi);
    if (s->lo == 0 && s->hi == 0) {
        if (self->size >= self->capacity)
            return 0;
        s->lo = lo;
        s->hi = hi;
        self->size++;
    }
    s->offset = offset;
    if (offset > self->latest)
        self->latest = offset;
    return 1;
}

/* The offset of a key, -1 when absent, -2 on error. */
static int64_t
get_one(COffsetMap *self, PyObject *key)
{
    uint64_t lo, hi;
    if (digest_key(self, key, &lo, &hi) < 0)
        return -2;
    Slot *s = find_slot(self, lo, hi);
    return (s->lo == 0 && s->hi == 0) ? -1 : s->offset;
}

static PyObject *
COffsetMap_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *kwlist[] = {"memory_bytes", "secret", NULL};
    PyObject *mem_obj, *secret_obj;
    Py_buffer secret;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO:COffsetMap", kwlist, &mem_obj,
                                     &secret_obj))
        return NULL;
    if (!PyObject_CheckBuffer(secret_obj)) {
        PyErr_Format(InvalidArgumentError, "secret must be bytes, not %.100s",
                     Py_TYPE(secret_obj)->tp_name);
        return NULL;
    }
    if (PyObject_GetBuffer(secret_obj, &secret, PyBUF_SIMPLE) < 0)
        return NULL;
    if (secret.len != SECRET_BYTES) {
        PyErr_Format(InvalidArgumentError, "secret must be %d bytes, not %zd", SECRET_BYTES,
                     secret.len);
        PyBuffer_Release(&secret);
        return NULL;
    }
    uint64_t k0 = load_le64((const uint8_t *)secret.buf);
    uint64_t k1 = load_le64((const uint8_t *)secret.buf + 8);
    PyBuffer_Release(&secret);

    int overflow = 0;
    long long memory = -1;
    if (PyLong_Check(mem_obj) && !PyBool_Check(mem_obj)) {
        memory = PyLong_AsLongLongAndOverflow(mem_obj, &overflow);
        if (memory == -1 && PyErr_Occurred())
            return NULL;
    }
    if (overflow || memory < (long long)MIN_SLOTS * SLOT_BYTES ||
        memory > MAX_MEMORY_BYTES) {
        PyErr_Format(InvalidArgumentError, "memory_bytes must be an int in %d..%lld, not %R",
                     MIN_SLOTS * SLOT_BYTES, MAX_MEMORY_BYTES, mem_obj);
        return NULL;
    }
    if ((unsigned long long)memory / SLOT_BYTES > (size_t)PY_SSIZE_T_MAX / SLOT_BYTES)
        return PyErr_NoMemory(); /* only on 32-bit builds */

    COffsetMap *self = (COffsetMap *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->nslots = (Py_ssize_t)(memory / SLOT_BYTES);
    self->capacity = self->nslots * 9 / 10; /* Kafka's dedupe buffer load factor */
    self->latest = -1;
    self->k0 = k0;
    self->k1 = k1;
    self->table = PyMem_Calloc((size_t)self->nslots, SLOT_BYTES);
    if (self->table == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void
COffsetMap_dealloc(COffsetMap *self)
{
    PyMem_Free(self->table);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
COffsetMap_put(COffsetMap *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "put() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    int r = put_one(self, args[0], args[1]);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

static PyObject *
COffsetMap_get(COffsetMap *self, PyObject *key)
{
    int64_t offset = get_one(self, key);
    return offset == -2 ? NULL : PyLong_FromLongLong(offset);
}

static PyObject *
COffsetMap_put_many(COffsetMap *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "put_many() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_ssize_t n = PyObject_Size(args[0]);
    if (n < 0)
        return NULL;
    Py_ssize_t m = PyObject_Size(args[1]);
    if (m < 0)
        return NULL;
    if (n != m) {
        PyErr_Format(InvalidArgumentError, "%zd keys but %zd offsets", n, m);
        return NULL;
    }
    /* Iterators (not indexing) stay safe if a sequence changes size under us. */
    PyObject *keys = PyObject_GetIter(args[0]);
    if (keys == NULL)
        return NULL;
    PyObject *offsets = PyObject_GetIter(args[1]);
    if (offsets == NULL) {
        Py_DECREF(keys);
        return NULL;
    }
    Py_ssize_t applied = 0;
    int failed = 0;
    for (;;) {
        PyObject *key = PyIter_Next(keys);
        if (key == NULL) {
            failed = PyErr_Occurred() != NULL;
            break;
        }
        PyObject *offset = PyIter_Next(offsets);
        if (offset == NULL) {
            Py_DECREF(key);
            if (!PyErr_Occurred())
                PyErr_SetString(InvalidArgumentError, "fewer offsets than keys");
            failed = 1;
            break;
        }
        int r = put_one(self, key, offset);
        Py_DECREF(key);
        Py_DECREF(offset);
        if (r < 0) {
            failed = 1;
            break;
        }
        if (r == 0)
            break;
        applied++;
    }
    Py_DECREF(keys);
    Py_DECREF(offsets);
    return failed ? NULL : PyLong_FromSsize_t(applied);
}

static PyObject *
COffsetMap_get_many(COffsetMap *self, PyObject *keys_obj)
{
    PyObject *keys = PyObject_GetIter(keys_obj);
    if (keys == NULL)
        return NULL;
    PyObject *result = PyList_New(0);
    if (result == NULL) {
        Py_DECREF(keys);
        return NULL;
    }
    PyObject *key;
    while ((key = PyIter_Next(keys)) != NULL) {
        int64_t offset = get_one(self, key);
        Py_DECREF(key);
        PyObject *item = offset == -2 ? NULL : PyLong_FromLongLong(offset);
        if (item == NULL || PyList_Append(result, item) < 0) {
            Py_XDECREF(item);
            goto error;
        }
        Py_DECREF(item);
    }
    if (PyErr_Occurred())
        goto error;
    Py_DECREF(keys);
    return result;
error:
    Py_DECREF(keys);
    Py_DECREF(result);
    return NULL;
}

static PyObject *
COffsetMap_clear(COffsetMap *self, PyObject *Py_UNUSED(ignored))
{
    memset(self->table, 0, (size_t)self->nslots * SLOT_BYTES);
    self->size = 0;
    self->latest = -1;
    Py_RETURN_NONE;
}

static Py_ssize_t
COffsetMap_len(COffsetMap *self)
{
    return self->size;
}

static PyObject *
COffsetMap_get_capacity(COffsetMap *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->capacity);
}

static PyObject *
COffsetMap_get_remaining(COffsetMap *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->capacity - self->size);
}

static PyObject *
COffsetMap_get_memory_bytes(COffsetMap *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong((long long)self->nslots * SLOT_BYTES);
}

static PyObject *
COffsetMap_get_latest_offset(COffsetMap *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLongLong(self->latest);
}

static PyMethodDef COffsetMap_methods[] = {
    {"put", (PyCFunction)(void (*)(void))COffsetMap_put, METH_FASTCALL,
     "put(key, offset) -> bool: False when full and the key is absent (nothing changed)."},
    {"get", (PyCFunction)COffsetMap_get, METH_O, "get(key) -> int: the offset, or -1."},
    {"put_many", (PyCFunction)(void (*)(void))COffsetMap_put_many, METH_FASTCALL,
     "put_many(keys, offsets) -> int: how many leading pairs were put."},
    {"get_many", (PyCFunction)COffsetMap_get_many, METH_O, "get_many(keys) -> list[int]"},
    {"clear", (PyCFunction)COffsetMap_clear, METH_NOARGS, "Remove every key."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef COffsetMap_getset[] = {
    {"capacity", (getter)COffsetMap_get_capacity, NULL, "Keys the map holds when full.", NULL},
    {"remaining", (getter)COffsetMap_get_remaining, NULL, "capacity - len(self).", NULL},
    {"memory_bytes", (getter)COffsetMap_get_memory_bytes, NULL, "Bytes of the table.", NULL},
    {"latest_offset", (getter)COffsetMap_get_latest_offset, NULL,
     "The largest offset put since creation or clear(), -1 if none.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods COffsetMap_as_sequence = {
    .sq_length = (lenfunc)COffsetMap_len,
};

static PyTypeObject COffsetMapType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "logstore.compaction._offset_map.COffsetMap",
    .tp_basicsize = sizeof(COffsetMap),
    .tp_dealloc = (destructor)COffsetMap_dealloc,
    .tp_as_sequence = &COffsetMap_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "COffsetMap(memory_bytes, secret): see logstore.compaction.offset_map.",
    .tp_methods = COffsetMap_methods,
    .tp_getset = COffsetMap_getset,
    .tp_new = COffsetMap_new,
};

/* ---- module ------------------------------------------------------------------------- */

static PyObject *
py_siphash128(PyObject *Py_UNUSED(module), PyObject *args)
{
    Py_buffer key, data;
    if (!PyArg_ParseTuple(args, "y*y*:_siphash128", &key, &data))
        return NULL;
    PyObject *result = NULL;
    if (key.len != SECRET_BYTES) {
        PyErr_Format(PyExc_ValueError, "the key must be %d bytes", SECRET_BYTES);
    }
    else {
        uint64_t lo, hi;
        uint8_t out[16];
        siphash128(load_le64((const uint8_t *)key.buf), load_le64((const uint8_t *)key.buf + 8),
                   (const uint8_t *)data.buf, (size_t)data.len, &lo, &hi);
        for (int i = 0; i < 8; i++) {
            out[i] = (uint8_t)(lo >> (8 * i));
            out[8 + i] = (uint8_t)(hi >> (8 * i));
        }
        result = PyBytes_FromStringAndSize((const char *)out, 16);
    }
    PyBuffer_Release(&key);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef module_methods[] = {
    {"_siphash128", py_siphash128, METH_VARARGS,
     "_siphash128(key16, data) -> 16 bytes: reference SipHash-2-4-128 (for tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "logstore.compaction._offset_map",
    "C implementation of the cleaner's offset map (see logstore.compaction.offset_map).", -1,
    module_methods,
};

PyMODINIT_FUNC
PyInit__offset_map(void)
{
    if (InvalidArgumentError == NULL) {
        PyObject *errors = PyImport_ImportModule("logstore.errors");
        if (errors == NULL)
            return NULL;
        InvalidArgumentError = PyObject_GetAttrString(errors, "InvalidArgumentError");
        Py_DECREF(errors);
        if (InvalidArgumentError == NULL)
            return NULL;
    }
    if (PyType_Ready(&COffsetMapType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "COffsetMap", (PyObject *)&COffsetMapType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
