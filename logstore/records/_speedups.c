/*
 * Optional C versions of the three per-record hot paths of logstore:
 *
 *   decode_records(data, pos, end, count, last_offset_delta, base_offset, base_timestamp,
 *                  timestamp_type, max_timestamp, topic, partition, min_offset)
 *       -> list[ConsumerRecord]
 *       the records section of one RecordBatch v2 (layout: logstore/records/builder.py),
 *       with exactly the checks of the pure-Python reader (logstore/records/reader.py);
 *   encode_record(offset_delta, timestamp_delta, key, value, headers) -> bytes
 *       one record, length prefix included (logstore/records/builder.py);
 *   encode_records(records, base_timestamp) -> (bytes, max_timestamp)
 *       the records section of a batch of (timestamp, key, value, headers) tuples;
 *   check_records(data, pos, end, count, last_offset_delta) -> (first_bad_delta, first_keyless)
 *       the records section of one batch checked as decode_records checks it, without building
 *       a single object (what a broker does with every produced batch): the index of the first
 *       record whose offset delta is not its index and of the first record without a key, each
 *       -1 if there is none;
 *   murmur2(data) -> int
 *       Kafka's murmur2 (logstore/client/partitioner.py).
 *
 * The Python modules stay the reference: logstore.records.speedups loads this module when it
 * was built and passes the exception and record classes in through setup(). Input to
 * decode_records is untrusted: every read is bounds-checked against `end`, counts are
 * checked against the bytes available before anything is allocated, and every failure raises
 * CorruptRecordError. tests/records/test_speedups.py runs both implementations on the same
 * inputs, including random and mutated bytes, and requires identical results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <limits.h>
#include <string.h>

static PyObject *CorruptRecordError = NULL;
static PyObject *InvalidArgumentError = NULL;
static PyTypeObject *RecordType = NULL;

#define MIN_RECORD_BYTES 7
#define MIN_HEADER_BYTES 2
#define MAX_VARINT_BYTES 10

/* ---- varints --------------------------------------------------------------------------- */

/* Decode a zigzag varint at *pos (reading no byte at or beyond `end`). Returns 0 and advances
 * *pos, or -1 with CorruptRecordError set. Same acceptance as varint.decode_varint: at most
 * 10 bytes, value inside int64. */
static int
read_varint(const uint8_t *p, Py_ssize_t end, Py_ssize_t *pos, int64_t *out)
{
    Py_ssize_t i = *pos;
    uint64_t raw = 0;
    int shift = 0;
    for (int n = 0; n < MAX_VARINT_BYTES; n++) {
        if (i >= end) {
            PyErr_Format(CorruptRecordError, "truncated varint at position %zd", *pos);
            return -1;
        }
        uint8_t b = p[i++];
        if (n == MAX_VARINT_BYTES - 1 && (b & 0x7F) > 1) {
            PyErr_Format(CorruptRecordError,
                         "varint at position %zd is outside the int64 range", *pos);
            return -1;
        }
        raw |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *pos = i;
            *out = (int64_t)(raw >> 1) ^ -(int64_t)(raw & 1);
            return 0;
        }
        shift += 7;
    }
    PyErr_Format(CorruptRecordError, "varint at position %zd is longer than 10 bytes", *pos);
    return -1;
}

static Py_ssize_t
varint_size(int64_t n)
{
    uint64_t z = ((uint64_t)n << 1) ^ (uint64_t)(n >> 63);
    Py_ssize_t size = 1;
    while (z > 0x7F) {
        z >>= 7;
        size++;
    }
    return size;
}

static uint8_t *
write_varint(uint8_t *out, int64_t n)
{
    uint64_t z = ((uint64_t)n << 1) ^ (uint64_t)(n >> 63);
    while (z > 0x7F) {
        *out++ = (uint8_t)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    *out++ = (uint8_t)z;
    return out;
}

/* ---- decode_records ------------------------------------------------------------------------ */

static PyObject *
corrupt(const char *message)
{
    PyErr_SetString(CorruptRecordError, message);
    return NULL;
}

/* Whether `count` records fit `size` bytes and the batch's last offset delta; -1 with
   CorruptRecordError set if not. */
static int
check_record_count(Py_ssize_t count, Py_ssize_t size, long long last_delta)
{
    if (count < 0 || count > size / MIN_RECORD_BYTES || count > last_delta + 1) {
        PyErr_Format(CorruptRecordError,
                     "record count %zd does not fit the batch (%zd bytes of records, last "
                     "offset delta %lld)", count, size, last_delta);
        return -1;
    }
    return 0;
}

/* A record's framing up to its offset delta: its *length (the record must fit before `end`),
   the attributes byte, the timestamp and offset deltas (the offset delta must exceed *prev,
   which it then becomes). *pos moves to the key; *record_end is where the record ends.
   -1 with CorruptRecordError set on bad bytes. */
static int
read_record_head(const uint8_t *p, Py_ssize_t end, Py_ssize_t *pos, int64_t *length,
                 Py_ssize_t *record_end, int64_t *ts_delta, int64_t *delta, int64_t *prev)
{
    if (read_varint(p, end, pos, length) < 0)
        return -1;
    if (*length < 0 || *length > end - *pos) {
        corrupt("record runs past the end of the batch");
        return -1;
    }
    *record_end = *pos + (Py_ssize_t)*length;
    if (*pos >= *record_end) { /* the attributes byte */
        corrupt("record runs past the end of the batch");
        return -1;
    }
    *pos += 1;
    if (read_varint(p, *record_end, pos, ts_delta) < 0 ||
        read_varint(p, *record_end, pos, delta) < 0)
        return -1;
    if (*delta <= *prev) {
        PyErr_Format(CorruptRecordError, "record offset delta %lld does not increase",
                     (long long)*delta);
        return -1;
    }
    *prev = *delta;
    return 0;
}

/* Decode `count` headers at *pos (inside the record ending at record_end). */
static PyObject *
decode_headers(const uint8_t *p, Py_ssize_t record_end, Py_ssize_t *pos)
{
    int64_t count;
    if (read_varint(p, record_end, pos, &count) < 0)
        return NULL;
    if (count < 0 || count > (record_end - *pos) / MIN_HEADER_BYTES) {
        PyErr_Format(CorruptRecordError, "invalid record header count %lld", (long long)count);
        return NULL;
    }
    PyObject *headers = PyTuple_New((Py_ssize_t)count);
    if (headers == NULL)
        return NULL;
    for (Py_ssize_t h = 0; h < (Py_ssize_t)count; h++) {
        int64_t key_len, value_len;
        if (read_varint(p, record_end, pos, &key_len) < 0)
            goto fail;
        if (key_len < 0 || key_len > record_end - *pos) {
            PyErr_Format(CorruptRecordError, "invalid record header key length %lld",
                         (long long)key_len);
            goto fail;
        }
        PyObject *key = PyUnicode_DecodeUTF8((const char *)p + *pos, (Py_ssize_t)key_len,
                                             "strict");
        if (key == NULL) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
                PyErr_SetString(CorruptRecordError, "record header key is not valid UTF-8");
            }
            goto fail;
        }
        *pos += (Py_ssize_t)key_len;
        if (read_varint(p, record_end, pos, &value_len) < 0) {
            Py_DECREF(key);
            goto fail;
        }
        PyObject *value;
        if (value_len >= 0) {
            if (value_len > record_end - *pos) {
                Py_DECREF(key);
                PyErr_Format(CorruptRecordError,
                             "record header value length %lld runs past the record",
                             (long long)value_len);
                goto fail;
            }
            value = PyBytes_FromStringAndSize((const char *)p + *pos, (Py_ssize_t)value_len);
            *pos += (Py_ssize_t)value_len;
        }
        else if (value_len == -1) {
            value = Py_NewRef(Py_None);
        }
        else {
            Py_DECREF(key);
            PyErr_Format(CorruptRecordError, "invalid record header value length %lld",
                         (long long)value_len);
            goto fail;
        }
        if (value == NULL) {
            Py_DECREF(key);
            goto fail;
        }
        PyObject *pair = PyTuple_Pack(2, key, value);
        Py_DECREF(key);
        Py_DECREF(value);
        if (pair == NULL)
            goto fail;
        PyObject_GC_UnTrack(pair); /* (str, bytes | None): acyclic */
        PyTuple_SET_ITEM(headers, h, pair);
    }
    if (PyObject_GC_IsTracked(headers))
        PyObject_GC_UnTrack(headers);
    return headers;
fail:
    Py_DECREF(headers);
    return NULL;
}

/* A length-prefixed byte string (key or value): -1 is None, other negatives are corrupt. */
static PyObject *
read_bytes(const uint8_t *p, Py_ssize_t record_end, Py_ssize_t *pos, const char *what)
{
    int64_t n;
    if (read_varint(p, record_end, pos, &n) < 0)
        return NULL;
    if (n == -1)
        return Py_NewRef(Py_None);
    if (n < 0) {
        PyErr_Format(CorruptRecordError, "invalid record %s length %lld", what, (long long)n);
        return NULL;
    }
    if (n > record_end - *pos)
        return corrupt("record runs past the end of the batch");
    PyObject *out = PyBytes_FromStringAndSize((const char *)p + *pos, (Py_ssize_t)n);
    *pos += (Py_ssize_t)n;
    return out;
}

/* Build one record tuple; steals a reference to every item, also on failure. */
static PyObject *
new_record(PyObject *topic, PyObject *partition, PyObject *offset, PyObject *timestamp,
           PyObject *key, PyObject *value, PyObject *headers, PyObject *ts_type)
{
    /* ConsumerRecord is a tuple subclass (NamedTuple): allocate it directly. */
    PyObject *items[8] = {topic, partition, offset, timestamp, key, value, headers, ts_type};
    PyObject *record = RecordType->tp_alloc(RecordType, 8);
    for (int i = 0; i < 8; i++) {
        if (record == NULL)
            Py_DECREF(items[i]);
        else
            PyTuple_SET_ITEM(record, i, items[i]); /* steals */
    }
    /* A record holds only str, int, bytes, None and untracked header tuples: it can never be
     * part of a reference cycle, so the cyclic GC need not scan it (CPython untracks such
     * tuples itself, but only lazily, after scanning them once). */
    if (record != NULL && PyObject_GC_IsTracked(record))
        PyObject_GC_UnTrack(record);
    return record;
}

static PyObject *
decode_records(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, end, count;
    long long last_delta, base_offset, base_ts, max_ts, min_offset;
    int log_append_time;
    PyObject *topic, *partition;
    if (RecordType == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "logstore._speedups.setup() was not called");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*nnnLLLpLUOL", &view, &pos, &end, &count, &last_delta,
                          &base_offset, &base_ts, &log_append_time, &max_ts, &topic,
                          &partition, &min_offset))
        return NULL;
    const uint8_t *p = (const uint8_t *)view.buf;
    PyObject *out = NULL, *ts_type = NULL;
    if (pos < 0 || end > view.len || pos > end) {
        PyErr_SetString(PyExc_ValueError, "records section outside the buffer");
        goto done;
    }
    if (check_record_count(count, end - pos, last_delta) < 0)
        goto done;
    ts_type = PyLong_FromLong(log_append_time ? 1 : 0);
    out = PyList_New(0);
    if (out == NULL || ts_type == NULL)
        goto fail;
    int64_t prev = -1;
    for (Py_ssize_t k = 0; k < count; k++) {
        int64_t length, ts_delta, delta;
        Py_ssize_t record_end;
        if (read_record_head(p, end, &pos, &length, &record_end, &ts_delta, &delta, &prev) < 0)
            goto fail;
        PyObject *key = read_bytes(p, record_end, &pos, "key");
        if (key == NULL)
            goto fail;
        PyObject *value = read_bytes(p, record_end, &pos, "value");
        if (value == NULL) {
            Py_DECREF(key);
            goto fail;
        }
        PyObject *headers;
        if (pos < record_end && p[pos] == 0) {
            pos += 1;
            headers = PyTuple_New(0);
        }
        else {
            headers = decode_headers(p, record_end, &pos);
        }
        if (headers == NULL) {
            Py_DECREF(key);
            Py_DECREF(value);
            goto fail;
        }
        if (pos != record_end) {
            Py_DECREF(key);
            Py_DECREF(value);
            Py_DECREF(headers);
            PyErr_Format(CorruptRecordError, "record length %lld does not match its content",
                         (long long)length);
            goto fail;
        }
        /* Offsets and timestamps are Python ints in the reference: no int64 overflow here
         * either (a hostile batch may carry base + delta beyond int64). */
        long long offset_value, ts_value;
        PyObject *offset, *timestamp;
        int offset_overflow = __builtin_add_overflow(base_offset, delta, &offset_value);
        if (!offset_overflow && offset_value < min_offset) {
            Py_DECREF(key);
            Py_DECREF(value);
            Py_DECREF(headers);
            continue;
        }
        if (offset_overflow) {
            PyObject *a = PyLong_FromLongLong(base_offset), *b = PyLong_FromLongLong(delta);
            offset = (a && b) ? PyNumber_Add(a, b) : NULL;
            Py_XDECREF(a);
            Py_XDECREF(b);
        }
        else {
            offset = PyLong_FromLongLong(offset_value);
        }
        if (log_append_time) {
            /* LogAppendTime: the broker's time (maxTimestamp) applies to every record. */
            timestamp = PyLong_FromLongLong(max_ts);
        }
        else if (__builtin_add_overflow(base_ts, ts_delta, &ts_value)) {
            PyObject *a = PyLong_FromLongLong(base_ts), *b = PyLong_FromLongLong(ts_delta);
            timestamp = (a && b) ? PyNumber_Add(a, b) : NULL;
            Py_XDECREF(a);
            Py_XDECREF(b);
        }
        else {
            timestamp = PyLong_FromLongLong(ts_value);
        }
        if (offset == NULL || timestamp == NULL) {
            Py_XDECREF(offset);
            Py_XDECREF(timestamp);
            Py_DECREF(key);
            Py_DECREF(value);
            Py_DECREF(headers);
            goto fail;
        }
        Py_INCREF(topic);
        Py_INCREF(partition);
        Py_INCREF(ts_type);
        PyObject *record = new_record(topic, partition, offset, timestamp, key, value, headers,
                                      ts_type);
        if (record == NULL)
            goto fail;
        int appended = PyList_Append(out, record);
        Py_DECREF(record);
        if (appended < 0)
            goto fail;
    }
    if (pos != end) {
        PyErr_Format(CorruptRecordError,
                     "records section does not end where the batch ends (%zd != %zd)", pos, end);
        goto fail;
    }
    if (prev > last_delta) {
        PyErr_Format(CorruptRecordError,
                     "record offset delta %lld exceeds last offset delta %lld", (long long)prev,
                     last_delta);
        goto fail;
    }
    goto done;
fail:
    Py_CLEAR(out);
done:
    Py_XDECREF(ts_type);
    PyBuffer_Release(&view);
    return out;
}

/* ---- check_records ------------------------------------------------------------------------- */

/* Skip a length-prefixed key or value; sets *is_null. Same checks as read_bytes. */
static int
skip_bytes(const uint8_t *p, Py_ssize_t record_end, Py_ssize_t *pos, const char *what,
           int *is_null)
{
    int64_t n;
    if (read_varint(p, record_end, pos, &n) < 0)
        return -1;
    *is_null = n == -1;
    if (n == -1)
        return 0;
    if (n < 0) {
        PyErr_Format(CorruptRecordError, "invalid record %s length %lld", what, (long long)n);
        return -1;
    }
    if (n > record_end - *pos) {
        corrupt("record runs past the end of the batch");
        return -1;
    }
    *pos += (Py_ssize_t)n;
    return 0;
}

static PyObject *
check_records(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, end, count;
    long long last_delta;
    if (!PyArg_ParseTuple(args, "y*nnnL", &view, &pos, &end, &count, &last_delta))
        return NULL;
    const uint8_t *p = (const uint8_t *)view.buf;
    PyObject *out = NULL;
    Py_ssize_t first_bad_delta = -1, first_keyless = -1;
    if (pos < 0 || end > view.len || pos > end) {
        PyErr_SetString(PyExc_ValueError, "records section outside the buffer");
        goto done;
    }
    if (check_record_count(count, end - pos, last_delta) < 0)
        goto done;
    int64_t prev = -1;
    for (Py_ssize_t k = 0; k < count; k++) {
        int64_t length, ts_delta, delta;
        int null_key, null_value;
        Py_ssize_t record_end;
        if (read_record_head(p, end, &pos, &length, &record_end, &ts_delta, &delta, &prev) < 0)
            goto done;
        if (delta != k && first_bad_delta < 0)
            first_bad_delta = k;
        if (skip_bytes(p, record_end, &pos, "key", &null_key) < 0 ||
            skip_bytes(p, record_end, &pos, "value", &null_value) < 0)
            goto done;
        if (null_key && first_keyless < 0)
            first_keyless = k;
        if (pos < record_end && p[pos] == 0) {
            pos += 1;
        }
        else {
            /* Headers are rare: check them with the decoder and drop what it built. */
            PyObject *headers = decode_headers(p, record_end, &pos);
            if (headers == NULL)
                goto done;
            Py_DECREF(headers);
        }
        if (pos != record_end) {
            PyErr_Format(CorruptRecordError, "record length %lld does not match its content",
                         (long long)length);
            goto done;
        }
    }
    if (pos != end) {
        PyErr_Format(CorruptRecordError,
                     "records section does not end where the batch ends (%zd != %zd)", pos, end);
        goto done;
    }
    if (prev > last_delta) {
        PyErr_Format(CorruptRecordError,
                     "record offset delta %lld exceeds last offset delta %lld", (long long)prev,
                     last_delta);
        goto done;
    }
    out = Py_BuildValue("(nn)", first_bad_delta, first_keyless);
done:
    PyBuffer_Release(&view);
    return out;
}

/* ---- encode_record ------------------------------------------------------------------------- */

/* The bytes of a key/value: None -> length -1; bytes -> borrowed; other bytes-like objects
 * (bytearray, memoryview, ...) -> copied with bytes() semantics, as the Python builder does. */
typedef struct {
    PyObject *copy; /* owned, or NULL */
    const char *data;
    Py_ssize_t len; /* -1 for null */
} Blob;

static int
blob_get(PyObject *obj, Blob *blob, const char *what)
{
    blob->copy = NULL;
    if (obj == Py_None) {
        blob->data = NULL;
        blob->len = -1;
        return 0;
    }
    if (!PyBytes_CheckExact(obj)) {
        if (!PyObject_CheckBuffer(obj) || PyUnicode_Check(obj)) {
            PyErr_Format(InvalidArgumentError, "%s must be bytes-like or None, not %.100s",
                         what, Py_TYPE(obj)->tp_name);
            return -1;
        }
        blob->copy = PyBytes_FromObject(obj);
        if (blob->copy == NULL)
            return -1;
        obj = blob->copy;
    }
    blob->data = PyBytes_AS_STRING(obj);
    blob->len = PyBytes_GET_SIZE(obj);
    return 0;
}

static void
blob_release(Blob *blob)
{
    Py_CLEAR(blob->copy);
}

/* A growing output buffer. */
typedef struct {
    char *data;
    Py_ssize_t len, cap;
} Writer;

static int
writer_reserve(Writer *w, Py_ssize_t extra)
{
    if (extra > PY_SSIZE_T_MAX - w->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t need = w->len + extra;
    if (need <= w->cap)
        return 0;
    Py_ssize_t cap = w->cap ? w->cap : 4096;
    while (cap < need)
        cap = cap > PY_SSIZE_T_MAX / 2 ? need : cap * 2;
    char *data = PyMem_Realloc(w->data, (size_t)cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    w->data = data;
    w->cap = cap;
    return 0;
}

/* Append one encoded record (length prefix included) to `w`. */
static int
encode_one(Writer *w, long long offset_delta, long long ts_delta, PyObject *key_obj,
           PyObject *value_obj, PyObject *headers_obj)
{
    Blob key, value;
    if (blob_get(key_obj, &key, "key") < 0)
        return -1;
    if (blob_get(value_obj, &value, "value") < 0) {
        blob_release(&key);
        return -1;
    }
    int status = -1;
    PyObject *items = NULL;
    Py_ssize_t n_headers = 0, fetched = 0;
    Blob *header_values = NULL;
    const char **header_keys = NULL;
    Py_ssize_t *header_key_lens = NULL;
    if (headers_obj != Py_None) {
        items = PySequence_Fast(headers_obj, "headers must be a sequence of (str, bytes) pairs");
        if (items == NULL) {
            if (PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_SetString(InvalidArgumentError,
                                "headers must be a sequence of (str, bytes) pairs");
            }
            goto out;
        }
        n_headers = PySequence_Fast_GET_SIZE(items);
    }
    if (n_headers) {
        header_values = PyMem_Calloc((size_t)n_headers, sizeof(Blob));
        header_keys = PyMem_Calloc((size_t)n_headers, sizeof(char *));
        header_key_lens = PyMem_Calloc((size_t)n_headers, sizeof(Py_ssize_t));
        if (!header_values || !header_keys || !header_key_lens) {
            PyErr_NoMemory();
            goto out;
        }
    }
    Py_ssize_t body = 1 + varint_size(ts_delta) + varint_size(offset_delta) +
                      varint_size(key.len) + (key.len > 0 ? key.len : 0) +
                      varint_size(value.len) + (value.len > 0 ? value.len : 0) +
                      varint_size(n_headers);
    for (Py_ssize_t i = 0; i < n_headers; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(items, i);
        if ((!PyTuple_Check(item) && !PyList_Check(item)) || PySequence_Fast_GET_SIZE(item) != 2) {
            PyErr_Format(InvalidArgumentError, "a header must be a (str, bytes) pair, not %R",
                         item);
            goto out;
        }
        PyObject *name = PySequence_Fast_GET_ITEM(item, 0);
        if (!PyUnicode_Check(name)) {
            PyErr_Format(InvalidArgumentError, "header key must be str, not %.100s",
                         Py_TYPE(name)->tp_name);
            goto out;
        }
        header_keys[i] = PyUnicode_AsUTF8AndSize(name, &header_key_lens[i]);
        if (header_keys[i] == NULL) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
                PyErr_Clear();
                PyErr_Format(InvalidArgumentError, "header key %R is not valid UTF-8", name);
            }
            goto out;
        }
        if (blob_get(PySequence_Fast_GET_ITEM(item, 1), &header_values[i], "header value") < 0)
            goto out;
        fetched = i + 1;
        body += varint_size(header_key_lens[i]) + header_key_lens[i] +
                varint_size(header_values[i].len) +
                (header_values[i].len > 0 ? header_values[i].len : 0);
    }
    if (writer_reserve(w, varint_size(body) + body) < 0)
        goto out;
    uint8_t *o = (uint8_t *)w->data + w->len;
    o = write_varint(o, body);
    *o++ = 0; /* attributes */
    o = write_varint(o, ts_delta);
    o = write_varint(o, offset_delta);
    o = write_varint(o, key.len);
    if (key.len > 0) {
        memcpy(o, key.data, (size_t)key.len);
        o += key.len;
    }
    o = write_varint(o, value.len);
    if (value.len > 0) {
        memcpy(o, value.data, (size_t)value.len);
        o += value.len;
    }
    o = write_varint(o, n_headers);
    for (Py_ssize_t i = 0; i < n_headers; i++) {
        o = write_varint(o, header_key_lens[i]);
        memcpy(o, header_keys[i], (size_t)header_key_lens[i]);
        o += header_key_lens[i];
        o = write_varint(o, header_values[i].len);
        if (header_values[i].len > 0) {
            memcpy(o, header_values[i].data, (size_t)header_values[i].len);
            o += header_values[i].len;
        }
    }
    w->len = (Py_ssize_t)((char *)o - w->data);
    status = 0;
out:
    for (Py_ssize_t i = 0; i < fetched; i++)
        blob_release(&header_values[i]);
    PyMem_Free(header_values);
    PyMem_Free(header_keys);
    PyMem_Free(header_key_lens);
    Py_XDECREF(items);
    blob_release(&key);
    blob_release(&value);
    return status;
}

static int
parse_deltas_error(void)
{
    if (PyErr_ExceptionMatches(PyExc_OverflowError) || PyErr_ExceptionMatches(PyExc_TypeError)) {
        PyErr_Clear();
        PyErr_SetString(InvalidArgumentError,
                        "offset and timestamp deltas must be ints inside int64");
    }
    return -1;
}

static PyObject *
encode_record(PyObject *module, PyObject *args)
{
    long long offset_delta, ts_delta;
    PyObject *key, *value, *headers;
    if (!PyArg_ParseTuple(args, "LLOOO", &offset_delta, &ts_delta, &key, &value, &headers)) {
        parse_deltas_error();
        return NULL;
    }
    Writer w = {NULL, 0, 0};
    PyObject *result = NULL;
    if (encode_one(&w, offset_delta, ts_delta, key, value, headers) == 0)
        result = PyBytes_FromStringAndSize(w.data, w.len);
    PyMem_Free(w.data);
    return result;
}

/* encode_records(records, base_timestamp) -> (records section, max timestamp): records are
 * (timestamp, key, value, headers) tuples with offset deltas 0, 1, 2, ... */
static PyObject *
encode_records(PyObject *module, PyObject *args)
{
    PyObject *records;
    long long base_ts;
    if (!PyArg_ParseTuple(args, "O!L", &PyList_Type, &records, &base_ts)) {
        parse_deltas_error();
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(records);
    Writer w = {NULL, 0, 0};
    long long max_ts = LLONG_MIN;
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(records, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4) {
            PyErr_SetString(InvalidArgumentError,
                            "records must be (timestamp, key, value, headers) tuples");
            goto out;
        }
        long long ts = PyLong_AsLongLong(PyTuple_GET_ITEM(item, 0));
        long long delta;
        if ((ts == -1 && PyErr_Occurred()) || __builtin_sub_overflow(ts, base_ts, &delta)) {
            if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_OverflowError) ||
                PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_SetString(InvalidArgumentError,
                                "record timestamps must be ints whose delta fits int64");
            }
            goto out;
        }
        if (ts > max_ts)
            max_ts = ts;
        if (encode_one(&w, i, delta, PyTuple_GET_ITEM(item, 1), PyTuple_GET_ITEM(item, 2),
                       PyTuple_GET_ITEM(item, 3)) < 0)
            goto out;
    }
    result = Py_BuildValue("(y#L)", w.data ? w.data : "", w.len, max_ts);
out:
    PyMem_Free(w.data);
    return result;
}

/* ---- murmur2 ------------------------------------------------------------------------------- */

static PyObject *
murmur2(PyObject *module, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_CONTIG_RO) < 0)
        return NULL;
    const uint8_t *data = view.buf;
    Py_ssize_t length = view.len;
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28cU ^ (uint32_t)length;
    Py_ssize_t words = length / 4;
    for (Py_ssize_t i = 0; i < words; i++) {
        const uint8_t *b = data + 4 * i;
        uint32_t k = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
                     ((uint32_t)b[3] << 24);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    const uint8_t *tail = data + 4 * words;
    switch (length & 3) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        h ^= (uint32_t)tail[0];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    PyBuffer_Release(&view);
    return PyLong_FromLong((long)(int32_t)h);
}

/* ---- module -------------------------------------------------------------------------------- */

static PyObject *
setup(PyObject *module, PyObject *args)
{
    PyObject *corrupt_cls, *invalid_cls, *record_cls;
    if (!PyArg_ParseTuple(args, "OOO", &corrupt_cls, &invalid_cls, &record_cls))
        return NULL;
    if (!PyType_Check(record_cls) ||
        !PyType_IsSubtype((PyTypeObject *)record_cls, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the record class must be a tuple subclass");
        return NULL;
    }
    Py_XSETREF(CorruptRecordError, Py_NewRef(corrupt_cls));
    Py_XSETREF(InvalidArgumentError, Py_NewRef(invalid_cls));
    Py_XSETREF(RecordType, (PyTypeObject *)Py_NewRef(record_cls));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "setup(CorruptRecordError, InvalidArgumentError, Record)"},
    {"decode_records", decode_records, METH_VARARGS,
     "Decode the records section of one batch into a list of records."},
    {"encode_record", encode_record, METH_VARARGS,
     "encode_record(offset_delta, timestamp_delta, key, value, headers) -> bytes"},
    {"encode_records", encode_records, METH_VARARGS,
     "encode_records(records, base_timestamp) -> (records section, max timestamp)"},
    {"check_records", check_records, METH_VARARGS,
     "check_records(data, pos, end, count, last_offset_delta) -> (first_bad_delta, "
     "first_keyless)"},
    {"murmur2", murmur2, METH_O, "Kafka's murmur2 hash as a signed 32-bit int."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "logstore.records._speedups",
    "C versions of logstore's per-record hot paths (see logstore.records.speedups).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module_def);
}
