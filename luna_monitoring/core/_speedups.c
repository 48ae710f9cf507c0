/* Compiled hot paths of luna_monitoring.core: the encoder's cached path, the worker clock, the
   collector's Timing and the request points.

   Optional: the modules that use it (point, clock, collector, request_id, request_points,
   the adapters' request hooks) run their pure-Python code when it is not built (no compiler
   at install time) or when LUNA_MONITORING_NO_EXTENSIONS is set.

   encode_lines(encoder, points) does what the inline loop of
   ``LineEncoder._encode_lines_python`` does for a point whose tag set, field keys and
   (for CountFields) count text are all cached and whose values are of the exact base
   types; every other point is handed to that Python method on its own, so both give the
   same lines and counts (tests/test_point.py runs every rule through both).

   UniqueClock is ``clock.UniqueClock`` in C: the same arithmetic on 64-bit ints. Timing is
   ``collector.Timing`` in C; its ``set`` checks fields with the Python function. assign_id
   and emit_points are those of ``request_points`` for the common request; start_hook and
   response_hook the adapters' request-class hooks; begin_handler and end_handler what
   ``monitored_estimation`` does around a handler. compiled_method gives methods of
   ``EstimationCollector`` and ``Buffer`` a twin for their common call, reading the slots of
   the exact class at their offsets and handing every other call to the Python method
   (tests/test_speedups.py, test_collector.py and test_buffer.py run both). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <limits.h>
#include <stddef.h>
#include <math.h>
#include <string.h>
#include <time.h>

#define MAX_PIECES 96
#define ASCII_CHARS 40
#define MIN_TIME_NS (LLONG_MIN + 2)
#define MAX_TIME_NS (LLONG_MAX - 1)

static PyObject *count_fields_type; /* point.CountFields */
static PyObject *checked_fields;    /* collector._checked_fields */
static PyObject *numeric_fields;    /* collector._NUMERIC_FIELDS: {series: {field: int or float}} */
static PyObject *execution_time;    /* "execution_time" */
static PyObject *dumps;             /* orjson.dumps: floats are written as the Python path writes them */
/* From the standard library, taken when the module is loaded. */
static PyObject *urandom;                     /* os.urandom */
static PyObject *deque_append, *deque_extend; /* the methods of collections.deque */

/* The value of an int into value; -1 with an error set. (PyLong_AsLongLong takes a slow
   path for every int of more than 30 bits: timestamps, perf_counter_ns.) */
static int
as_long_long(PyObject *number, long long *value)
{
    int overflow = 0;
    *value = PyLong_AsLongLongAndOverflow(number, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "int too big to convert");
        return -1;
    }
    return *value == -1 && PyErr_Occurred() ? -1 : 0;
}

/* The value of an int into value, its reference released; -1 with the error set, also for
   NULL (the error of the call that made it). */
static int
take_long_long(PyObject *number, long long *value)
{
    if (number == NULL) {
        return -1;
    }
    int result = as_long_long(number, value);
    Py_DECREF(number);
    return result;
}

/* time.perf_counter_ns() as a C number: on Linux both read CLOCK_MONOTONIC. */
static long long
monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* The seconds since start (an int of perf_counter_ns) into seconds, a whole number of
   nanoseconds: what seconds_since of the clock module returns; -1 with an error set. */
static int
elapsed_seconds(PyObject *start, double *seconds)
{
    long long now = monotonic_ns(), started;
    if (as_long_long(start, &started) < 0) {
        return -1;
    }
    *seconds = (double)(now - started) / 1e9;
    return 0;
}

/* -- timed points ------------------------------------------------------------------------ */

/* A point of the compiled request path that reads as the tuple (series, time_ns, tags,
   fields), fields being {name: text, "execution_time": seconds} (name and text optional),
   made anew each time it is read. One object where the tuple is three (tuple, dict, float),
   and, unlike them, neither tracked by the garbage collector nor counted towards its
   collections while it waits in the buffer. */
typedef struct {
    PyObject_HEAD
    PyObject *series, *time_ns, *tags;
    PyObject *name, *text; /* a first field, or both NULL */
    double seconds;
} TimedPoint;

static PyTypeObject TimedPointType;

static PyObject *
timed_point(PyObject *series, PyObject *time_ns, PyObject *tags, double seconds,
            PyObject *name, PyObject *text)
{
    TimedPoint *self = PyObject_New(TimedPoint, &TimedPointType);
    if (self == NULL) {
        return NULL;
    }
    self->series = Py_NewRef(series);
    self->time_ns = Py_NewRef(time_ns);
    self->tags = Py_NewRef(tags);
    self->name = name && text ? Py_NewRef(name) : NULL;
    self->text = name && text ? Py_NewRef(text) : NULL;
    self->seconds = seconds;
    return (PyObject *)self;
}

/* A point tuple, untracked: no cycle can go through a point. */
static PyObject *
point_tuple(PyObject *series, PyObject *time_ns, PyObject *tags, PyObject *fields)
{
    PyObject *point = PyTuple_Pack(4, series, time_ns, tags, fields);
    if (point != NULL) {
        PyObject_GC_UnTrack(point);
    }
    return point;
}

static PyObject *
timed_point_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *series, *time_ns, *tags, *name = NULL, *text = NULL;
    double seconds;
    static char *keywords[] = {"series", "time_ns", "tags", "seconds", "name", "text", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "UO!Od|UO:TimedPoint", keywords, &series,
                                     &PyLong_Type, &time_ns, &tags, &seconds, &name, &text)) {
        return NULL;
    }
    if ((name == NULL) != (text == NULL)) {
        PyErr_SetString(PyExc_TypeError, "TimedPoint: name and text go together");
        return NULL;
    }
    return timed_point(series, time_ns, tags, seconds, name, text);
}

static void
timed_point_dealloc(TimedPoint *self)
{
    Py_DECREF(self->series);
    Py_DECREF(self->time_ns);
    Py_DECREF(self->tags);
    Py_XDECREF(self->name);
    Py_XDECREF(self->text);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
timed_point_fields(TimedPoint *self)
{
    PyObject *fields = PyDict_New(), *seconds = fields ? PyFloat_FromDouble(self->seconds) : NULL;
    if (seconds == NULL ||
        (self->name != NULL && PyDict_SetItem(fields, self->name, self->text) < 0) ||
        PyDict_SetItem(fields, execution_time, seconds) < 0) {
        Py_XDECREF(fields);
        fields = NULL;
    }
    Py_XDECREF(seconds);
    return fields;
}

static Py_ssize_t
timed_point_length(PyObject *self)
{
    return 4;
}

static PyObject *
timed_point_item(TimedPoint *self, Py_ssize_t index)
{
    switch (index) {
    case 0:
        return Py_NewRef(self->series);
    case 1:
        return Py_NewRef(self->time_ns);
    case 2:
        return Py_NewRef(self->tags);
    case 3:
        return timed_point_fields(self);
    default:
        PyErr_SetString(PyExc_IndexError, "point index out of range");
        return NULL;
    }
}

/* The tuple a timed point reads as, or anything else itself (new references). */
static PyObject *
as_tuple(PyObject *object)
{
    if (!Py_IS_TYPE(object, &TimedPointType)) {
        return Py_NewRef(object);
    }
    TimedPoint *self = (TimedPoint *)object;
    PyObject *fields = timed_point_fields(self);
    PyObject *tuple = fields ? point_tuple(self->series, self->time_ns, self->tags, fields) : NULL;
    Py_XDECREF(fields);
    return tuple;
}

static PyObject *
timed_point_richcompare(PyObject *left, PyObject *right, int op)
{
    PyObject *a = as_tuple(left), *b = a ? as_tuple(right) : NULL;
    PyObject *result = b ? PyObject_RichCompare(a, b, op) : NULL;
    Py_XDECREF(a);
    Py_XDECREF(b);
    return result;
}

static PyObject *
timed_point_repr(PyObject *self)
{
    PyObject *tuple = as_tuple(self);
    PyObject *text = tuple ? PyObject_Repr(tuple) : NULL;
    Py_XDECREF(tuple);
    return text;
}

static PySequenceMethods timed_point_sequence = {
    .sq_length = timed_point_length,
    .sq_item = (ssizeargfunc)timed_point_item,
};

static PyTypeObject TimedPointType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "luna_monitoring.core._speedups.TimedPoint",
    .tp_doc = PyDoc_STR("TimedPoint(series, time_ns, tags, seconds, name=None, text=None): "
                        "a point read as (series, time_ns, tags, {name: text, "
                        "'execution_time': seconds}), neither tracked nor counted by the "
                        "garbage collector."),
    .tp_basicsize = sizeof(TimedPoint),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = timed_point_new,
    .tp_dealloc = (destructor)timed_point_dealloc,
    .tp_as_sequence = &timed_point_sequence,
    .tp_richcompare = timed_point_richcompare,
    .tp_repr = timed_point_repr,
    .tp_hash = PyObject_HashNotImplemented,
};

/* -- encoder ----------------------------------------------------------------------------- */

typedef struct {
    PyObject *text; /* a str (borrowed), or NULL for the ASCII text below */
    Py_ssize_t len;
    char ascii[ASCII_CHARS];
} Piece;

/* A prefix found in one call, for a shared tag set and a series (strong refs: an object
   freed during the call cannot lend its address to another). */
typedef struct {
    PyObject *tags, *series, *prefix;
} Recent;

#define RECENT 32 /* more than the tag sets of a request's points */

typedef struct {
    PyObject *prefixes, *shared, *keys, *counts; /* the encoder's caches (dicts) */
    Recent recent[RECENT]; /* by the addresses of the tags and the series */
    PyObject *last_counts, *last_counts_text; /* cached_counts' last key and text (strong) */
    Py_ssize_t max_chars;                          /* lines this long are measured: Python path */
    int bounded;
    Piece pieces[MAX_PIECES];
    int count;
    Py_ssize_t total;
    Py_UCS4 max_char;
} Line;

/* A dict's value for key (borrowed), or NULL for a miss; errors (an unhashable key) count
   as a miss. */
static PyObject *
lookup(PyObject *dict, PyObject *key)
{
    PyObject *value = PyDict_GetItemWithError(dict, key);
    if (value == NULL) {
        PyErr_Clear();
    }
    return value;
}

static int
add_text(Line *line, PyObject *text)
{
    if (line->count == MAX_PIECES) {
        return 0;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) {
        PyErr_Clear();
        return 0;
    }
#endif
    Piece *piece = &line->pieces[line->count++];
    piece->text = text;
    piece->len = PyUnicode_GET_LENGTH(text);
    line->total += piece->len;
    Py_UCS4 max_char = PyUnicode_MAX_CHAR_VALUE(text);
    if (max_char > line->max_char) {
        line->max_char = max_char;
    }
    return 1;
}

static int
add_ascii(Line *line, const char *text, Py_ssize_t len)
{
    if (line->count == MAX_PIECES || len >= ASCII_CHARS) {
        return 0;
    }
    Piece *piece = &line->pieces[line->count++];
    piece->text = NULL;
    piece->len = len;
    memcpy(piece->ascii, text, (size_t)len);
    line->total += len;
    return 1;
}

/* "00" to "99": two digits a division. */
static const char digit_pairs[] = "00010203040506070809101112131415161718192021222324252627282930"
                                  "31323334353637383940414243444546474849505152535455565758596061"
                                  "62636465666768697071727374757677787980818283848586878889909192"
                                  "93949596979899";

/* The decimal digits of value after prefix (one char or none) and before suffix (likewise),
   into text (ASCII_CHARS long); their count. */
static Py_ssize_t
format_int(char *text, char prefix, long long value, char suffix)
{
    char digits[24];
    int start = sizeof digits; /* digits[start:] hold them */
    unsigned long long magnitude = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    while (magnitude >= 100) {
        start -= 2;
        memcpy(digits + start, digit_pairs + 2 * (magnitude % 100), 2);
        magnitude /= 100;
    }
    if (magnitude >= 10) {
        start -= 2;
        memcpy(digits + start, digit_pairs + 2 * magnitude, 2);
    }
    else {
        digits[--start] = (char)('0' + magnitude);
    }
    Py_ssize_t length = 0;
    if (prefix) {
        text[length++] = prefix;
    }
    if (value < 0) {
        text[length++] = '-';
    }
    memcpy(text + length, digits + start, sizeof digits - (size_t)start);
    length += (Py_ssize_t)(sizeof digits - (size_t)start);
    if (suffix) {
        text[length++] = suffix;
    }
    return length;
}

/* A float that is a whole number of nanoseconds in seconds, 0 < x < 10**6 (how the package
   measures execution times), as orjson writes it, into text (ASCII_CHARS long); its length,
   or 0 for any other float. Such a float is the double nearest to n / 10**9 for an n of at
   most 15 digits, and a decimal of at most 15 significant digits is the shortest that reads
   back as the double nearest to it: the digits of n without trailing zeros, written fixed
   from 10**-5 up and in exponent form below (orjson's shortest representation). */
static Py_ssize_t
format_seconds(char *text, double seconds)
{
    if (!(seconds > 0.0 && seconds < 1e6)) {
        return 0;
    }
    long long nanoseconds = llround(seconds * 1e9);
    if (nanoseconds <= 0 || (double)nanoseconds / 1e9 != seconds) {
        return 0;
    }
    int exponent = -9; /* seconds == digits * 10**exponent */
    while (nanoseconds % 10 == 0) {
        nanoseconds /= 10;
        exponent++;
    }
    char digits[24];
    int count = (int)format_int(digits, 0, nanoseconds, 0);
    int point = count + exponent; /* digits before the decimal point (<= 0: zeros after it) */
    Py_ssize_t length = 0;
    if (exponent >= 0) { /* whole seconds */
        memcpy(text, digits, (size_t)count);
        length = count;
        memset(text + length, '0', (size_t)exponent);
        length += exponent;
        memcpy(text + length, ".0", 2);
        return length + 2;
    }
    if (point > 0) {
        memcpy(text, digits, (size_t)point);
        text[point] = '.';
        memcpy(text + point + 1, digits + point, (size_t)(count - point));
        return count + 1;
    }
    if (point > -5) {
        memcpy(text, "0.", 2);
        memset(text + 2, '0', (size_t)-point);
        memcpy(text + 2 - point, digits, (size_t)count);
        return 2 - point + count;
    }
    text[length++] = digits[0];
    if (count > 1) {
        text[length++] = '.';
        memcpy(text + length, digits + 1, (size_t)(count - 1));
        length += count - 1;
    }
    return length + format_int(text + length, 'e', point - 1, 0);
}

/* " <time_ns>": 0 unless time_ns is an int InfluxDB accepts. */
static int
add_time(Line *line, PyObject *time_ns)
{
    if (!PyLong_CheckExact(time_ns)) {
        return 0;
    }
    int overflow;
    long long value = PyLong_AsLongLongAndOverflow(time_ns, &overflow);
    if (overflow || value < MIN_TIME_NS || value > MAX_TIME_NS) {
        return 0;
    }
    char text[ASCII_CHARS];
    return add_ascii(line, text, format_int(text, ' ', value, 0));
}

/* The cached "measurement,tags" of a point (borrowed), or NULL. */
static PyObject *
cached_prefix(Line *line, PyObject *series, PyObject *tags)
{
    if (Py_IS_TYPE(tags, &PyDictProxy_Type)) {
        PyObject *id = PyLong_FromVoidPtr(tags);
        if (id == NULL) {
            PyErr_Clear();
            return NULL;
        }
        PyObject *entry = lookup(line->shared, id);
        Py_DECREF(id);
        if (entry == NULL || !PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != 2 ||
            PyTuple_GET_ITEM(entry, 0) != tags || !PyDict_CheckExact(PyTuple_GET_ITEM(entry, 1))) {
            return NULL;
        }
        return lookup(PyTuple_GET_ITEM(entry, 1), series);
    }
    if (!PyDict_CheckExact(tags)) {
        return NULL;
    }
    /* (series, *tags, *tags.values()) */
    Py_ssize_t size = PyDict_GET_SIZE(tags);
    PyObject *key = PyTuple_New(1 + 2 * size);
    if (key == NULL) {
        PyErr_Clear();
        return NULL;
    }
    Py_INCREF(series);
    PyTuple_SET_ITEM(key, 0, series);
    Py_ssize_t position = 0, index = 1;
    PyObject *name, *value;
    while (PyDict_Next(tags, &position, &name, &value)) {
        Py_INCREF(name);
        Py_INCREF(value);
        PyTuple_SET_ITEM(key, index, name);
        PyTuple_SET_ITEM(key, index + size, value);
        index++;
    }
    PyObject *prefix = lookup(line->prefixes, key);
    Py_DECREF(key);
    return prefix;
}

/* Whether fields holds, in order, the values after the series in key (the same objects). */
static int
same_counts(PyObject *key, PyObject *series, PyObject *fields)
{
    if (key == NULL || PyTuple_GET_ITEM(key, 0) != series ||
        PyTuple_GET_SIZE(key) != 1 + PyDict_GET_SIZE(fields)) {
        return 0;
    }
    Py_ssize_t position = 0, index = 1;
    PyObject *name, *value;
    while (PyDict_Next(fields, &position, &name, &value)) {
        if (value != PyTuple_GET_ITEM(key, index++)) {
            return 0;
        }
    }
    return 1;
}

/* The cached text of CountFields (borrowed), or NULL. The key and text of the last one found
   are kept: the counts of most requests are the same small ints. */
static PyObject *
cached_counts(Line *line, PyObject *series, PyObject *fields)
{
    if (same_counts(line->last_counts, series, fields)) {
        return line->last_counts_text;
    }
    Py_ssize_t size = PyDict_GET_SIZE(fields), index = 1, position = 0;
    PyObject *key = PyTuple_New(1 + size), *name, *value;
    if (key == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyTuple_SET_ITEM(key, 0, Py_NewRef(series));
    while (index <= size && PyDict_Next(fields, &position, &name, &value)) {
        PyTuple_SET_ITEM(key, index++, Py_NewRef(value));
    }
    PyObject *text = index == 1 + size ? lookup(line->counts, key) : NULL;
    if (text != NULL) {
        Py_XSETREF(line->last_counts, key);
        Py_XSETREF(line->last_counts_text, Py_NewRef(text));
    }
    else {
        Py_DECREF(key);
    }
    return text;
}

static int
has_char_to_escape(PyObject *text)
{
    Py_ssize_t length = PyUnicode_GET_LENGTH(text);
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    if (kind == PyUnicode_1BYTE_KIND) {
        const char *chars = data;
        return memchr(chars, '"', length) || memchr(chars, '\\', length) ||
               memchr(chars, '\n', length);
    }
    for (Py_ssize_t i = 0; i < length; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c == '"' || c == '\\' || c == '\n') {
            return 1;
        }
    }
    return 0;
}

/* The separator and the cached key (with its "=") of a field; 0 when not cached. */
static int
add_key(Line *line, PyObject *name, const char *sep)
{
    PyObject *key = lookup(line->keys, name);
    return key != NULL && PyUnicode_CheckExact(key) && add_ascii(line, sep, 1) &&
           add_text(line, key);
}

/* A finite float (object: the same as a Python float, or NULL to make one if orjson must
   write it); 0 for the Python path. */
static int
add_float(Line *line, double value, PyObject *object)
{
    char seconds[ASCII_CHARS];
    Py_ssize_t length = format_seconds(seconds, value);
    if (length) {
        return add_ascii(line, seconds, length);
    }
    PyObject *number = object ? Py_NewRef(object) : PyFloat_FromDouble(value);
    PyObject *text = number ? PyObject_CallOneArg(dumps, number) : NULL;
    Py_XDECREF(number);
    if (text == NULL || !PyBytes_CheckExact(text)) {
        PyErr_Clear();
        Py_XDECREF(text);
        return 0;
    }
    int added = add_ascii(line, PyBytes_AS_STRING(text), PyBytes_GET_SIZE(text));
    Py_DECREF(text);
    return added;
}

/* One field; 1 written, 0 to the Python path, 2 left out silently (None, NaN, inf). */
static int
add_field(Line *line, PyObject *name, PyObject *value, const char *sep)
{
    if (value == Py_None || (PyFloat_CheckExact(value) && !isfinite(PyFloat_AS_DOUBLE(value)))) {
        return 2;
    }
    if (!add_key(line, name, sep)) {
        return 0;
    }
    if (PyFloat_CheckExact(value)) {
        return add_float(line, PyFloat_AS_DOUBLE(value), value);
    }
    if (PyUnicode_CheckExact(value)) {
#if PY_VERSION_HEX < 0x030C0000
        if (PyUnicode_READY(value) < 0) {
            PyErr_Clear();
            return 0;
        }
#endif
        return !has_char_to_escape(value) && add_ascii(line, "\"", 1) &&
               add_text(line, value) && add_ascii(line, "\"", 1);
    }
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (overflow) {
            return 0;
        }
        char text[ASCII_CHARS];
        return add_ascii(line, text, format_int(text, 0, number, 'i'));
    }
    if (PyBool_Check(value)) {
        return value == Py_True ? add_ascii(line, "true", 4) : add_ascii(line, "false", 5);
    }
    return 0;
}

/* The fields of a timed point; 0 for the Python path. */
static int
add_timed_fields(Line *line, TimedPoint *point)
{
    const char *sep = " ";
    if (point->name != NULL) {
        int added = add_field(line, point->name, point->text, sep);
        if (added == 0) {
            return 0;
        }
        if (added == 1) {
            sep = ",";
        }
    }
    return isfinite(point->seconds) && add_key(line, execution_time, sep) &&
           add_float(line, point->seconds, NULL);
}

/* The line of a point on the cached path (new reference), or NULL (no error set) for the
   Python path. */
static PyObject *
cached_line(Line *line, PyObject *point)
{
    PyObject *series, *time_ns, *tags, *fields = NULL;
    TimedPoint *timed = NULL;
    if (Py_IS_TYPE(point, &TimedPointType)) {
        timed = (TimedPoint *)point;
        series = timed->series;
        time_ns = timed->time_ns;
        tags = timed->tags;
    }
    /* a tuple, or a subclass that unpacks as one (Point) */
    else if (PyTuple_Check(point) && PyTuple_GET_SIZE(point) == 4 &&
             Py_TYPE(point)->tp_iter == PyTuple_Type.tp_iter) {
        series = PyTuple_GET_ITEM(point, 0);
        time_ns = PyTuple_GET_ITEM(point, 1);
        tags = PyTuple_GET_ITEM(point, 2);
        fields = PyTuple_GET_ITEM(point, 3);
    }
    else {
        return NULL;
    }
    line->count = 0;
    line->total = 0;
    line->max_char = 0x7f;
    Recent *recent = NULL;
    if (Py_IS_TYPE(tags, &PyDictProxy_Type)) { /* a shared tag set, found by identity */
        recent = &line->recent[(((uintptr_t)tags >> 4) ^ ((uintptr_t)series >> 4)) % RECENT];
    }
    PyObject *prefix;
    if (recent != NULL && recent->tags == tags && recent->series == series) {
        prefix = recent->prefix;
    }
    else {
        prefix = cached_prefix(line, series, tags);
        if (prefix == NULL || !PyUnicode_CheckExact(prefix)) {
            return NULL;
        }
        if (recent != NULL) {
            Py_INCREF(tags);
            Py_INCREF(series);
            Py_INCREF(prefix);
            Py_XSETREF(recent->tags, tags);
            Py_XSETREF(recent->series, series);
            Py_XSETREF(recent->prefix, prefix);
        }
    }
    if (!add_text(line, prefix)) {
        return NULL;
    }
    if (timed != NULL) {
        if (!add_timed_fields(line, timed) || !add_time(line, time_ns)) {
            return NULL;
        }
    }
    else if ((PyObject *)Py_TYPE(fields) == count_fields_type) {
        PyObject *text = cached_counts(line, series, fields);
        if (text == NULL || !PyUnicode_CheckExact(text) || !add_ascii(line, " ", 1) ||
            !add_text(line, text) || !add_time(line, time_ns)) {
            return NULL; /* not cached yet: the Python path keeps its text */
        }
    }
    else {
        if (!PyDict_CheckExact(fields)) {
            return NULL;
        }
        const char *sep = " ";
        Py_ssize_t position = 0;
        PyObject *name, *value;
        while (PyDict_Next(fields, &position, &name, &value)) {
            int added = add_field(line, name, value, sep);
            if (added == 0) {
                return NULL;
            }
            if (added == 1) {
                sep = ",";
            }
        }
        if (sep[0] == ' ' || !add_time(line, time_ns)) {
            return NULL;
        }
    }
    if (line->bounded && line->total >= line->max_chars) {
        return NULL;
    }
    PyObject *text = PyUnicode_New(line->total, line->max_char);
    if (text == NULL) {
        PyErr_Clear();
        return NULL;
    }
    int kind = PyUnicode_KIND(text);
    void *data = PyUnicode_DATA(text);
    Py_ssize_t at = 0;
    for (int i = 0; i < line->count; i++) {
        Piece *piece = &line->pieces[i];
        if (kind == PyUnicode_1BYTE_KIND) {
            memcpy((char *)data + at,
                   piece->text ? (const void *)PyUnicode_1BYTE_DATA(piece->text) : piece->ascii,
                   (size_t)piece->len);
        }
        else if (piece->text) {
            if (PyUnicode_CopyCharacters(text, at, piece->text, 0, piece->len) < 0) {
                Py_DECREF(text);
                PyErr_Clear();
                return NULL;
            }
        }
        else {
            for (Py_ssize_t j = 0; j < piece->len; j++) {
                PyUnicode_WRITE(kind, data, at + j, (Py_UCS4)(unsigned char)piece->ascii[j]);
            }
        }
        at += piece->len;
    }
    return text;
}

/* point.join_lines for lines that are all ASCII str (the common case): one copy into the
   body instead of a join and an encode; None when a line is not, for the Python code. */
static PyObject *
join_ascii_lines(PyObject *module, PyObject *lines)
{
    if (!PyList_CheckExact(lines)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t count = PyList_GET_SIZE(lines), total = count ? count - 1 : 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        if (!PyUnicode_CheckExact(line) || !PyUnicode_IS_ASCII(line)) {
            Py_RETURN_NONE;
        }
        total += PyUnicode_GET_LENGTH(line);
    }
    PyObject *body = PyBytes_FromStringAndSize(NULL, total);
    if (body == NULL) {
        return NULL;
    }
    char *at = PyBytes_AS_STRING(body);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *line = PyList_GET_ITEM(lines, i);
        Py_ssize_t length = PyUnicode_GET_LENGTH(line);
        if (i) {
            *at++ = '\n';
        }
        memcpy(at, PyUnicode_1BYTE_DATA(line), (size_t)length);
        at += length;
    }
    return body;
}

static int
get_cache(PyObject *encoder, const char *name, PyObject **cache)
{
    *cache = PyObject_GetAttrString(encoder, name);
    if (*cache == NULL) {
        return -1;
    }
    if (!PyDict_CheckExact(*cache)) {
        PyErr_Format(PyExc_TypeError, "encoder.%s must be a dict", name);
        return -1;
    }
    return 0;
}

static PyObject *
encode_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "encode_lines(encoder, points)");
        return NULL;
    }
    if (dumps == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "call setup(CountFields, dumps) first");
        return NULL;
    }
    PyObject *encoder = args[0], *result = NULL, *iterator = NULL, *point, *slow = NULL;
    PyObject *max_chars = NULL;
    Line *line = PyMem_Malloc(sizeof(Line));
    if (line == NULL) {
        return PyErr_NoMemory();
    }
    line->prefixes = line->shared = line->keys = line->counts = NULL;
    memset(line->recent, 0, sizeof line->recent);
    line->last_counts = line->last_counts_text = NULL;
    if (get_cache(encoder, "_prefixes", &line->prefixes) < 0 ||
        get_cache(encoder, "_shared", &line->shared) < 0 ||
        get_cache(encoder, "_field_keys", &line->keys) < 0 ||
        get_cache(encoder, "_counts", &line->counts) < 0 ||
        (max_chars = PyObject_GetAttrString(encoder, "_max_line_chars")) == NULL ||
        (slow = PyObject_GetAttrString(encoder, "_encode_lines_python")) == NULL) {
        goto done;
    }
    line->max_chars = PyLong_AsSsize_t(max_chars);
    if (line->max_chars == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        line->max_chars = PY_SSIZE_T_MAX;
    }
    line->bounded = line->max_chars < ((Py_ssize_t)1 << 60); /* the Python path's _UNBOUNDED // 4 */
    if ((result = PyList_New(0)) == NULL || (iterator = PyObject_GetIter(args[1])) == NULL) {
        Py_CLEAR(result);
        goto done;
    }
    while ((point = PyIter_Next(iterator)) != NULL) {
        PyObject *text = cached_line(line, point);
        int failed;
        if (text != NULL) {
            failed = PyList_Append(result, text);
            Py_DECREF(text);
        }
        else { /* the Python path, one point: it fills the caches and counts what it leaves out */
            PyObject *one = PyTuple_Pack(1, point);
            PyObject *lines = one ? PyObject_CallOneArg(slow, one) : NULL;
            Py_XDECREF(one);
            failed = lines == NULL ||
                     PyList_SetSlice(result, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX, lines) < 0;
            Py_XDECREF(lines);
        }
        Py_DECREF(point);
        if (failed) {
            Py_CLEAR(result);
            goto done;
        }
    }
    if (PyErr_Occurred()) {
        Py_CLEAR(result);
    }
done:
    Py_XDECREF(iterator);
    Py_XDECREF(slow);
    Py_XDECREF(max_chars);
    Py_XDECREF(line->prefixes);
    Py_XDECREF(line->shared);
    Py_XDECREF(line->keys);
    Py_XDECREF(line->counts);
    Py_XDECREF(line->last_counts);
    Py_XDECREF(line->last_counts_text);
    for (int i = 0; i < RECENT; i++) {
        Py_XDECREF(line->recent[i].tags);
        Py_XDECREF(line->recent[i].series);
        Py_XDECREF(line->recent[i].prefix);
    }
    PyMem_Free(line);
    return result;
}

static PyObject *
setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyType_Check(args[0]) || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "setup(CountFields, dumps)");
        return NULL;
    }
    Py_XSETREF(count_fields_type, Py_NewRef(args[0]));
    Py_XSETREF(dumps, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

static PyObject *
setup_timing(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyCallable_Check(args[0]) || !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "setup_timing(checked_fields, numeric_fields: dict)");
        return NULL;
    }
    Py_XSETREF(checked_fields, Py_NewRef(args[0]));
    Py_XSETREF(numeric_fields, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

/* -- timing ------------------------------------------------------------------------------ */

/* collector.Timing in C. Not tracked by the garbage collector (it cannot be part of a
   cycle: what it holds are a list of points, a clock, and str, int, mapping and dict values
   of numbers), and neither are the point tuples it makes (the same holds for them): they
   wait in the buffer without making the collector's full collections more frequent. */
typedef struct {
    PyObject_HEAD
    PyObject *sink, *clock, *series, *tags, *fields, *time_ns;
    long long start; /* monotonic_ns() at __enter__ */
} Timing;

static void
timing_dealloc(Timing *self)
{
    Py_XDECREF(self->sink);
    Py_XDECREF(self->clock);
    Py_XDECREF(self->series);
    Py_XDECREF(self->tags);
    Py_XDECREF(self->fields);
    Py_XDECREF(self->time_ns);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject TimingType;

static PyObject *
make_timing(PyObject *sink, PyObject *clock, PyObject *series, PyObject *tags)
{
    Timing *self = PyObject_New(Timing, &TimingType);
    if (self == NULL) {
        return NULL;
    }
    self->sink = Py_NewRef(sink);
    self->clock = Py_NewRef(clock);
    self->series = Py_NewRef(series);
    self->tags = Py_NewRef(tags);
    self->fields = self->time_ns = NULL;
    return (PyObject *)self;
}

static PyObject *
new_timing(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyList_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "timing(sink: list, clock, series, tags)");
        return NULL;
    }
    return make_timing(args[0], args[1], args[2], args[3]);
}

static PyObject *
timing_enter(Timing *self, PyObject *unused)
{
    if (self->clock == NULL) {
        PyErr_SetString(PyExc_TypeError, "a Timing is made by the collector");
        return NULL;
    }
    PyObject *time_ns = PyObject_CallNoArgs(self->clock);
    if (time_ns == NULL) {
        return NULL;
    }
    Py_XSETREF(self->time_ns, time_ns);
    self->start = monotonic_ns();
    return Py_NewRef(self);
}

static PyObject *
timing_exit(Timing *self, PyObject *const *args, Py_ssize_t nargs)
{
    long long end = monotonic_ns();
    if (nargs < 1 || args[0] != Py_None) {
        Py_RETURN_NONE; /* the block raised: nothing recorded */
    }
    if (self->time_ns == NULL) {
        PyErr_SetString(PyExc_TypeError, "__exit__ without __enter__");
        return NULL;
    }
    double elapsed = (double)(end - self->start) / 1e9; /* whole nanoseconds, as seconds_since */
    PyObject *point;
    if (self->fields == NULL) { /* execution_time alone */
        point = timed_point(self->series, self->time_ns, self->tags, elapsed, NULL, NULL);
    }
    else { /* set()'s fields, execution_time added unless set */
        PyObject *fields = self->fields;
        int has = PyDict_Contains(fields, execution_time);
        PyObject *seconds = has == 0 ? PyFloat_FromDouble(elapsed) : NULL;
        if (has < 0 || (has == 0 && (seconds == NULL ||
                                     PyDict_SetItem(fields, execution_time, seconds) < 0))) {
            Py_XDECREF(seconds);
            return NULL;
        }
        Py_XDECREF(seconds);
        point = point_tuple(self->series, self->time_ns, self->tags, fields);
    }
    if (point == NULL) {
        return NULL;
    }
    int failed = PyList_Append(self->sink, point);
    Py_DECREF(point);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Whether every field is of its declared numeric type, an int within int64 but -2**63 or a
   float of magnitude at most INT64_MAX: what _checked_fields passes unchanged. */
static int
declared_numbers(PyObject *series, PyObject *fields)
{
    PyObject *types = numeric_fields ? lookup(numeric_fields, series) : NULL;
    if (types == NULL || !PyDict_CheckExact(types)) {
        return 0;
    }
    Py_ssize_t position = 0;
    PyObject *name, *value;
    while (PyDict_Next(fields, &position, &name, &value)) {
        PyObject *type = lookup(types, name);
        if (type == NULL || (PyObject *)Py_TYPE(value) != type) {
            return 0;
        }
        if (PyFloat_CheckExact(value)) {
            if (!(fabs(PyFloat_AS_DOUBLE(value)) < 9223372036854775808.0)) { /* NaN too */
                return 0;
            }
        }
        else if (PyLong_CheckExact(value)) {
            int overflow;
            long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (overflow || number == LLONG_MIN) {
                return 0;
            }
        }
        else {
            return 0;
        }
    }
    return 1;
}

static PyObject *
timing_set(Timing *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf)) {
        PyErr_SetString(PyExc_TypeError, "set() takes keyword arguments only");
        return NULL;
    }
    if (self->series == NULL || checked_fields == NULL) {
        PyErr_SetString(PyExc_TypeError, "a Timing is made by the collector");
        return NULL;
    }
    PyObject *given = PyDict_New();
    if (given == NULL) {
        return NULL;
    }
    Py_ssize_t count = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (PyDict_SetItem(given, PyTuple_GET_ITEM(kwnames, i), args[i]) < 0) {
            Py_DECREF(given);
            return NULL;
        }
    }
    PyObject *checked;
    if (declared_numbers(self->series, given)) {
        checked = given;
    }
    else {
        checked = PyObject_CallFunctionObjArgs(checked_fields, self->series, given, NULL);
        Py_DECREF(given);
        if (checked == NULL) {
            return NULL;
        }
    }
    if (self->fields == NULL) {
        self->fields = checked;
        Py_RETURN_NONE;
    }
    int failed = PyDict_Update(self->fields, checked);
    Py_DECREF(checked);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef timing_methods[] = {
    {"__enter__", (PyCFunction)timing_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))timing_exit, METH_FASTCALL, NULL},
    {"set", (PyCFunction)(void (*)(void))timing_set, METH_FASTCALL | METH_KEYWORDS,
     "Add fields of the series inside the block; ValueError on an unknown field or a wrong "
     "type. An execution_time given here replaces the measured one."},
    {NULL},
};

static PyTypeObject TimingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "luna_monitoring.core._speedups.Timing",
    .tp_doc = PyDoc_STR("Context manager of one estimation or image load (compiled "
                        "collector.Timing)."),
    .tp_basicsize = sizeof(Timing),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)timing_dealloc,
    .tp_methods = timing_methods,
};

/* Callable objects used as methods bind as functions do: the instance first (and with
   Py_TPFLAGS_METHOD_DESCRIPTOR, ``obj.method(...)`` binds nothing at all). */
static PyObject *
method_get(PyObject *self, PyObject *instance, PyObject *owner)
{
    return instance == NULL ? Py_NewRef(self) : PyMethod_New(self, instance);
}

/* -- collector -------------------------------------------------------------------------- */

/* EstimationCollector's estimation, image_load and add_usage for the common call: they read
   and write the slots of an exact EstimationCollector at the offsets its member descriptors
   give. Any other call (a subclass, tags, a cache miss, a value to check) goes to the Python
   method, which raises what it raises. */
#define SLOT(object, offset) (*(PyObject **)((char *)(object) + (offset)))

/* The offset of a slot (``descr``: its member descriptor, borrowed, or NULL) in the instances
   of ``type``, or -1 when ``descr`` is not an object slot of ``type`` or of a base (where
   the offset holds in its instances' layout). */
static Py_ssize_t
member_offset(PyTypeObject *type, PyObject *descr)
{
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type) ||
        ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX ||
        !PyType_IsSubtype(type, PyDescr_TYPE(descr))) {
        return -1;
    }
    return ((PyMemberDescrObject *)descr)->d_member->offset;
}

static PyTypeObject *collector_type; /* collector.EstimationCollector */
static Py_ssize_t off_clock, off_estimations, off_images, off_service, off_start_ns, off_tag_sets,
    off_usages;
static PyObject *tag_sets_by_service; /* collector._TAG_SETS: {service: tag sets} */
static PyObject *plain_estimators; /* frozenset of the series without tags but batch_size */
static PyObject *usage_fields;     /* {estimator: "<estimator>_usages"} */
static PyObject *no_usages;        /* CountFields with every count 0 */
static PyObject *s_batch_size, *s_format, *s_exif, *s_autorotated, *s_image_load, *s_sdkloop_task,
    *s_usages_statistic;

/* A method compiled for its common call: bound as functions are (see method_get), holding
   the Python method it stands for (every call it does not take; its __wrapped__, name and
   doc) and what the compiled call uses. */
#define METHOD_USES 6
typedef struct {
    PyObject_HEAD
    PyObject *python;
    PyObject *uses[METHOD_USES];
    vectorcallfunc vectorcall;
} Method;

static PyTypeObject MethodType;

static PyObject *
new_method(PyObject *python, vectorcallfunc call, PyObject *const *uses, int count)
{
    Method *method = PyObject_New(Method, &MethodType);
    if (method == NULL) {
        return NULL;
    }
    method->python = Py_NewRef(python);
    for (int i = 0; i < METHOD_USES; i++) {
        method->uses[i] = i < count ? Py_NewRef(uses[i]) : NULL;
    }
    method->vectorcall = call;
    return (PyObject *)method;
}


/* A request's usage counts, all zero: a copy of no_usages, untracked by the garbage collector
   (str keys and int counts cannot make a cycle; the dict tracks itself again should a
   container be put in it), so that those waiting in the buffer are not traversed. */
static PyObject *
new_usages(void)
{
    PyObject *usages = PyObject_CallOneArg(count_fields_type, no_usages);
    if (usages != NULL) {
        PyObject_GC_UnTrack(usages);
    }
    return usages;
}

/* 1 if ``self`` is an exact EstimationCollector whose slots hold what the compiled methods
   take them to hold (else the Python method runs, and raises what it raises). */
static int
collector_ready(PyObject *self)
{
    if (!Py_IS_TYPE(self, collector_type)) {
        return 0;
    }
    PyObject *images = SLOT(self, off_images), *estimations = SLOT(self, off_estimations);
    PyObject *tag_sets = SLOT(self, off_tag_sets), *usages = SLOT(self, off_usages);
    return SLOT(self, off_clock) != NULL && SLOT(self, off_start_ns) != NULL && images != NULL &&
           PyList_CheckExact(images) && estimations != NULL && PyList_CheckExact(estimations) &&
           tag_sets != NULL && PyDict_CheckExact(tag_sets) && usages != NULL &&
           (usages == Py_None || Py_IS_TYPE(usages, (PyTypeObject *)count_fields_type));
}

static PyObject *
collector_estimation(Method *method, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    /* (self, series, batch_size=int), series a plain estimator whose tags are cached */
    if (PyVectorcall_NARGS(nargsf) == 2 && kwnames != NULL && PyTuple_GET_SIZE(kwnames) == 1 &&
        PyTuple_GET_ITEM(kwnames, 0) == s_batch_size && collector_ready(args[0]) &&
        PyLong_CheckExact(args[2])) {
        int plain = PySet_Contains(plain_estimators, args[1]);
        if (plain < 0) {
            PyErr_Clear();
        }
        PyObject *tags = plain > 0 ? lookup(SLOT(args[0], off_tag_sets), args[2]) : NULL;
        if (tags != NULL) {
            return make_timing(SLOT(args[0], off_estimations), SLOT(args[0], off_clock), args[1],
                               tags);
        }
    }
    return PyObject_Vectorcall(method->python, args, nargsf, kwnames);
}

static PyObject *
collector_image_load(Method *method, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    /* (self, format=str, exif=bool, autorotated=bool), in that order, tags cached */
    if (PyVectorcall_NARGS(nargsf) == 1 && kwnames != NULL && PyTuple_GET_SIZE(kwnames) == 3 &&
        PyTuple_GET_ITEM(kwnames, 0) == s_format && PyTuple_GET_ITEM(kwnames, 1) == s_exif &&
        PyTuple_GET_ITEM(kwnames, 2) == s_autorotated && collector_ready(args[0]) &&
        PyUnicode_CheckExact(args[1]) && PyBool_Check(args[2]) && PyBool_Check(args[3])) {
        PyObject *key = PyTuple_Pack(4, s_image_load, args[1], args[2], args[3]);
        if (key == NULL) {
            return NULL;
        }
        /* ready again: making the key can run a collection, whose finalisers run Python */
        PyObject *tags = collector_ready(args[0]) ? lookup(SLOT(args[0], off_tag_sets), key) : NULL;
        Py_DECREF(key);
        if (tags != NULL) {
            return make_timing(SLOT(args[0], off_images), SLOT(args[0], off_clock), s_image_load,
                               tags);
        }
    }
    return PyObject_Vectorcall(method->python, args, nargsf, kwnames);
}

static PyObject *
collector_add_usage(Method *method, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    /* (self, estimator[, count]), a known estimator, count an int >= 0 within int64 */
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if ((nargs == 2 || nargs == 3) && kwnames == NULL && collector_ready(args[0]) &&
        (nargs == 2 || PyLong_CheckExact(args[2]))) {
        PyObject *field = lookup(usage_fields, args[1]);
        int overflow = 0;
        long long count = nargs == 2 ? 1 : PyLong_AsLongLongAndOverflow(args[2], &overflow);
        PyObject *usages = SLOT(args[0], off_usages);
        if (field != NULL && !overflow && count >= 0) {
            if (usages == Py_None) {
                if ((usages = new_usages()) == NULL) {
                    return NULL;
                }
                Py_XSETREF(SLOT(args[0], off_usages), usages);
            }
            PyObject *before = PyDict_GetItemWithError(usages, field);
            if (before == NULL) {
                return PyErr_Occurred() ? NULL : PyObject_Vectorcall(method->python, args, nargsf, kwnames);
            }
            PyObject *added = nargs == 2 ? PyLong_FromLong(1) : Py_NewRef(args[2]);
            PyObject *after = added ? PyNumber_Add(before, added) : NULL;
            Py_XDECREF(added);
            if (after == NULL || PyDict_SetItem(usages, field, after) < 0) {
                Py_XDECREF(after);
                return NULL;
            }
            Py_DECREF(after);
            Py_RETURN_NONE;
        }
    }
    return PyObject_Vectorcall(method->python, args, nargsf, kwnames);
}

static PyObject *
collector_init(Method *method, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    /* (self, clock, service), the service's tag sets made */
    PyObject *tag_sets = NULL;
    if (PyVectorcall_NARGS(nargsf) == 3 && kwnames == NULL && Py_IS_TYPE(args[0], collector_type)) {
        tag_sets = lookup(tag_sets_by_service, args[2]);
    }
    if (tag_sets == NULL) {
        return PyObject_Vectorcall(method->python, args, nargsf, kwnames);
    }
    PyObject *self = args[0];
    PyObject *start_ns = PyObject_CallNoArgs(args[1]);
    PyObject *images = start_ns ? PyList_New(0) : NULL;
    PyObject *estimations = images ? PyList_New(0) : NULL;
    if (estimations == NULL) {
        Py_XDECREF(start_ns);
        Py_XDECREF(images);
        return NULL;
    }
    Py_XSETREF(SLOT(self, off_clock), Py_NewRef(args[1]));
    Py_XSETREF(SLOT(self, off_service), Py_NewRef(args[2]));
    Py_XSETREF(SLOT(self, off_tag_sets), Py_NewRef(tag_sets));
    Py_XSETREF(SLOT(self, off_start_ns), start_ns);
    Py_XSETREF(SLOT(self, off_images), images);
    Py_XSETREF(SLOT(self, off_estimations), estimations);
    Py_XSETREF(SLOT(self, off_usages), Py_NewRef(Py_None));
    Py_RETURN_NONE;
}

/* The point of a duration: timed when it is a float, else a tuple of {execution_time: it}. */
static PyObject *
duration_point(PyObject *series, PyObject *time_ns, PyObject *tags, PyObject *seconds)
{
    if (PyFloat_CheckExact(seconds)) {
        return timed_point(series, time_ns, tags, PyFloat_AS_DOUBLE(seconds), NULL, NULL);
    }
    PyObject *fields = PyDict_New();
    PyObject *point = fields && PyDict_SetItem(fields, execution_time, seconds) == 0
                          ? point_tuple(series, time_ns, tags, fields)
                          : NULL;
    Py_XDECREF(fields);
    return point;
}

static PyObject *
collector_points(Method *method, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    /* (self, execution_time), the tags of sdkloop_task and usages_statistic cached */
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL || !collector_ready(args[0])) {
        return PyObject_Vectorcall(method->python, args, nargsf, kwnames);
    }
    /* All held: an allocation can run a collection, whose finalisers run Python. */
    PyObject *self = args[0], *tag_sets = Py_NewRef(SLOT(self, off_tag_sets));
    PyObject *images = Py_NewRef(SLOT(self, off_images));
    PyObject *estimations = Py_NewRef(SLOT(self, off_estimations));
    PyObject *start_ns = Py_NewRef(SLOT(self, off_start_ns));
    PyObject *usages = Py_NewRef(SLOT(self, off_usages));
    PyObject *key = NULL, *task_tags = NULL, *usage_tags = NULL, *task = NULL;
    PyObject *usage = NULL, *points = NULL, *count;
    if (PyList_GET_SIZE(images) == 0 && PyList_GET_SIZE(estimations) == 0 && usages == Py_None) {
        points = PyList_New(0);
        goto done;
    }
    if ((count = PyLong_FromSsize_t(PyList_GET_SIZE(images))) == NULL) {
        goto done;
    }
    key = PyTuple_Pack(2, s_sdkloop_task, count);
    Py_DECREF(count);
    if (key == NULL) {
        goto done;
    }
    task_tags = Py_XNewRef(lookup(tag_sets, key));
    usage_tags = Py_XNewRef(lookup(tag_sets, s_usages_statistic));
    if (task_tags == NULL || usage_tags == NULL) {
        points = PyObject_Vectorcall(method->python, args, nargsf, kwnames);
        goto done;
    }
    Py_SETREF(usages, usages == Py_None ? new_usages() : Py_NewRef(usages));
    if (usages == NULL ||
        (task = duration_point(s_sdkloop_task, start_ns, task_tags, args[1])) == NULL ||
        (usage = point_tuple(s_usages_statistic, start_ns, usage_tags, usages)) == NULL) {
        goto done;
    }
    /* the list made for the lists' sizes as they are once it exists: nothing runs after it */
    Py_ssize_t image_count, estimation_count;
    do {
        Py_XDECREF(points);
        image_count = PyList_GET_SIZE(images);
        estimation_count = PyList_GET_SIZE(estimations);
        if ((points = PyList_New(2 + image_count + estimation_count)) == NULL) {
            goto done;
        }
    } while (image_count != PyList_GET_SIZE(images) ||
             estimation_count != PyList_GET_SIZE(estimations));
    Py_ssize_t at = 0;
    PyList_SET_ITEM(points, at++, Py_NewRef(task));
    for (Py_ssize_t i = 0; i < image_count; i++) {
        PyList_SET_ITEM(points, at++, Py_NewRef(PyList_GET_ITEM(images, i)));
    }
    for (Py_ssize_t i = 0; i < estimation_count; i++) {
        PyList_SET_ITEM(points, at++, Py_NewRef(PyList_GET_ITEM(estimations, i)));
    }
    PyList_SET_ITEM(points, at, Py_NewRef(usage));
done:
    Py_DECREF(tag_sets);
    Py_DECREF(images);
    Py_DECREF(estimations);
    Py_DECREF(start_ns);
    Py_XDECREF(usages);
    Py_XDECREF(key);
    Py_XDECREF(task_tags);
    Py_XDECREF(usage_tags);
    Py_XDECREF(task);
    Py_XDECREF(usage);
    return points;
}

static Py_ssize_t slot_offset(PyTypeObject *type, const char *name);

/* Buffer.append and .extend while the bound leaves room: deque.append/extend on _raw. */
static PyTypeObject *buffer_type; /* buffer.Buffer */
static Py_ssize_t off_raw, off_room;

/* Room in an exact Buffer for ``count`` more raw points: 1, or 0 (then Python decides). */
static int
buffer_has_room(PyObject *self, Py_ssize_t count)
{
    if (!Py_IS_TYPE(self, buffer_type)) {
        return 0;
    }
    PyObject *room = SLOT(self, off_room), *raw = SLOT(self, off_raw);
    if (room == NULL || raw == NULL || !PyLong_CheckExact(room)) {
        return 0;
    }
    Py_ssize_t held = PyObject_Size(raw);
    if (held < 0) {
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(room);
    if (limit == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return held + count <= limit;
}

static PyObject *
buffer_append(Method *method, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) == 2 && kwnames == NULL && buffer_has_room(args[0], 1)) {
        PyObject *call[2] = {SLOT(args[0], off_raw), args[1]};
        return PyObject_Vectorcall(deque_append, call, 2, NULL);
    }
    return PyObject_Vectorcall(method->python, args, nargsf, kwnames);
}

static PyObject *
buffer_extend(Method *method, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) == 2 && kwnames == NULL && PyList_CheckExact(args[1]) &&
        buffer_has_room(args[0], PyList_GET_SIZE(args[1]))) {
        PyObject *call[2] = {SLOT(args[0], off_raw), args[1]};
        return PyObject_Vectorcall(deque_extend, call, 2, NULL);
    }
    return PyObject_Vectorcall(method->python, args, nargsf, kwnames);
}

static PyObject *
setup_buffer(PyObject *module, PyObject *type)
{
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "setup_buffer(Buffer)");
        return NULL;
    }
    if ((off_raw = slot_offset((PyTypeObject *)type, "_raw")) < 0 ||
        (off_room = slot_offset((PyTypeObject *)type, "_room")) < 0) {
        return NULL;
    }
    Py_XSETREF(buffer_type, (PyTypeObject *)Py_NewRef(type));
    Py_RETURN_NONE;
}

/* The translate and __format__ of a header text known to need no sanitising: the text itself
   for the framework's sanitising table and for an empty format spec. */
static PyObject *sanitising_table; /* the table the framework translates header texts with */

static PyObject *
text_translate(Method *method, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) == 2 && kwnames == NULL && args[1] == sanitising_table) {
        return Py_NewRef(args[0]);
    }
    return PyObject_Vectorcall(method->python, args, nargsf, kwnames);
}

static PyObject *
text_format(Method *method, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) == 2 && kwnames == NULL && PyUnicode_CheckExact(args[1]) &&
        PyUnicode_GET_LENGTH(args[1]) == 0) {
        return Py_NewRef(args[0]);
    }
    return PyObject_Vectorcall(method->python, args, nargsf, kwnames);
}

static PyObject *
setup_header_text(PyObject *module, PyObject *table)
{
    Py_XSETREF(sanitising_table, Py_NewRef(table));
    Py_RETURN_NONE;
}

static PyObject *
method_python_attribute(Method *self, void *name)
{
    return PyObject_GetAttrString(self->python, (const char *)name);
}

static PyObject *
method_wrapped(Method *self, void *unused)
{
    return Py_NewRef(self->python);
}

static PyGetSetDef method_getset[] = {
    {"__doc__", (getter)method_python_attribute, NULL, NULL, "__doc__"},
    {"__name__", (getter)method_python_attribute, NULL, NULL, "__name__"},
    {"__qualname__", (getter)method_python_attribute, NULL, NULL, "__qualname__"},
    {"__wrapped__", (getter)method_wrapped, NULL, NULL, NULL},
    {NULL},
};

static void
method_dealloc(Method *self)
{
    Py_XDECREF(self->python);
    for (int i = 0; i < METHOD_USES; i++) {
        Py_XDECREF(self->uses[i]);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject MethodType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "luna_monitoring.core._speedups.Method",
    .tp_doc = PyDoc_STR("A method compiled for its common call (__wrapped__: the Python "
                        "method, which takes every other call)."),
    .tp_basicsize = sizeof(Method),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_vectorcall_offset = offsetof(Method, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = method_get,
    .tp_getset = method_getset,
    .tp_dealloc = (destructor)method_dealloc,
};

/* The offset of the slot ``name`` of ``type`` (a Python class with __slots__), or -1. */
static Py_ssize_t
slot_offset(PyTypeObject *type, const char *name)
{
    Py_ssize_t offset = member_offset(type, PyDict_GetItemString(type->tp_dict, name));
    if (offset < 0) {
        PyErr_Format(PyExc_TypeError, "%s has no slot %s", type->tp_name, name);
    }
    return offset;
}

static PyObject *
setup_collector(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyType_Check(args[0]) || !PyFrozenSet_CheckExact(args[1]) ||
        !PyDict_CheckExact(args[2]) || !PyDict_CheckExact(args[4]) || count_fields_type == NULL ||
        !Py_IS_TYPE(args[3], (PyTypeObject *)count_fields_type)) {
        PyErr_SetString(PyExc_TypeError,
                        "setup_collector(EstimationCollector, plain_estimators: frozenset, "
                        "usage_fields: dict, no_usages: CountFields, tag_sets: dict), after "
                        "setup");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)args[0];
    if ((off_clock = slot_offset(type, "_clock")) < 0 ||
        (off_estimations = slot_offset(type, "_estimations")) < 0 ||
        (off_images = slot_offset(type, "_images")) < 0 ||
        (off_service = slot_offset(type, "_service")) < 0 ||
        (off_start_ns = slot_offset(type, "_start_ns")) < 0 ||
        (off_tag_sets = slot_offset(type, "_tag_sets")) < 0 ||
        (off_usages = slot_offset(type, "_usages")) < 0) {
        return NULL;
    }
    Py_XSETREF(collector_type, (PyTypeObject *)Py_NewRef(type));
    Py_XSETREF(plain_estimators, Py_NewRef(args[1]));
    Py_XSETREF(usage_fields, Py_NewRef(args[2]));
    Py_XSETREF(no_usages, Py_NewRef(args[3]));
    Py_XSETREF(tag_sets_by_service, Py_NewRef(args[4]));
    Py_RETURN_NONE;
}

static PyObject *
compiled_method(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static const struct {
        const char *name;
        vectorcallfunc call;
        void *ready; /* what its setup sets: not NULL before the method can be made */
    } compiled[] = {
        {"EstimationCollector.__init__", (vectorcallfunc)collector_init, &collector_type},
        {"EstimationCollector.estimation", (vectorcallfunc)collector_estimation, &collector_type},
        {"EstimationCollector.image_load", (vectorcallfunc)collector_image_load, &collector_type},
        {"EstimationCollector.add_usage", (vectorcallfunc)collector_add_usage, &collector_type},
        {"EstimationCollector.points", (vectorcallfunc)collector_points, &collector_type},
        {"Buffer.append", (vectorcallfunc)buffer_append, &buffer_type},
        {"Buffer.extend", (vectorcallfunc)buffer_extend, &buffer_type},
        {"HeaderText.translate", (vectorcallfunc)text_translate, &sanitising_table},
        {"HeaderText.__format__", (vectorcallfunc)text_format, &sanitising_table},
        {"HeaderName.translate", (vectorcallfunc)text_translate, &sanitising_table},
    };
    const char *name = nargs == 2 && PyUnicode_Check(args[0]) ? PyUnicode_AsUTF8(args[0]) : NULL;
    for (size_t i = 0; name != NULL && i < Py_ARRAY_LENGTH(compiled); i++) {
        if (strcmp(name, compiled[i].name) == 0 && *(void **)compiled[i].ready != NULL) {
            return new_method(args[1], compiled[i].call, NULL, 0);
        }
    }
    PyErr_Clear();
    PyErr_SetString(PyExc_TypeError,
                    "compiled_method(qualified_name, python_method): a method of "
                    "EstimationCollector (after setup_collector), Buffer (after setup_buffer), "
                    "HeaderText or HeaderName (after setup_header_text) with a compiled twin");
    return NULL;
}

/* -- decorated handlers ------------------------------------------------------------------ */

/* The start and end of a handler decorated with monitored_estimation (collector's
   _python_begin and _python_end) in C. An argument of a type the finders have not seen
   goes to the Python start, which learns it. */
static PyObject *finders;      /* collector._FINDERS: {argument type: finder or None} */
static PyObject *python_begin; /* collector._python_begin */
static PyObject *current_var;  /* collector._CURRENT */
static PyObject *s_clock, *s_now_ns_method, *s_settings, *s_service, *s_points, *s_emit_all;

static PyObject *
begin_handler(PyObject *module, PyObject *args)
{
    if (!PyTuple_Check(args) || finders == NULL || collector_type == NULL) {
        PyErr_SetString(PyExc_TypeError, "begin_handler(args: tuple), after setup_handlers");
        return NULL;
    }
    PyObject *monitoring = NULL;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(args) && monitoring == NULL; i++) {
        PyObject *arg = PyTuple_GET_ITEM(args, i);
        PyObject *finder = PyDict_GetItemWithError(finders, (PyObject *)Py_TYPE(arg));
        if (finder == NULL) {
            return PyErr_Occurred() ? NULL : PyObject_CallOneArg(python_begin, args);
        }
        if (finder != Py_None) {
            Py_INCREF(finder); /* held: a finder may make the finders forget it */
            monitoring = PyObject_CallOneArg(finder, arg);
            Py_DECREF(finder);
            if (monitoring == NULL) {
                return NULL;
            }
        }
    }
    if (monitoring == NULL || monitoring == Py_None) {
        Py_XDECREF(monitoring);
        Py_RETURN_NONE;
    }
    PyObject *clock = NULL, *now_ns = NULL, *settings = NULL, *service = NULL;
    PyObject *collector = NULL, *token = NULL, *start = NULL, *started = NULL;
    if ((clock = PyObject_GetAttr(monitoring, s_clock)) != NULL &&
        (now_ns = PyObject_GetAttr(clock, s_now_ns_method)) != NULL &&
        (settings = PyObject_GetAttr(monitoring, s_settings)) != NULL &&
        (service = PyObject_GetAttr(settings, s_service)) != NULL) {
        PyObject *init[2] = {now_ns, service};
        if ((collector = PyObject_Vectorcall((PyObject *)collector_type, init, 2, NULL)) != NULL &&
            (token = PyContextVar_Set(current_var, collector)) != NULL &&
            (start = PyLong_FromLongLong(monotonic_ns())) != NULL) {
            started = PyTuple_Pack(4, monitoring, collector, token, start);
        }
    }
    Py_DECREF(monitoring);
    Py_XDECREF(clock);
    Py_XDECREF(now_ns);
    Py_XDECREF(settings);
    Py_XDECREF(service);
    Py_XDECREF(collector);
    Py_XDECREF(token);
    Py_XDECREF(start);
    return started;
}

static PyObject *
end_handler(PyObject *module, PyObject *started)
{
    if (!PyTuple_CheckExact(started) || PyTuple_GET_SIZE(started) != 4 || current_var == NULL) {
        PyErr_SetString(PyExc_TypeError, "end_handler(what begin_handler returned)");
        return NULL;
    }
    PyObject *monitoring = PyTuple_GET_ITEM(started, 0), *collector = PyTuple_GET_ITEM(started, 1);
    double seconds;
    PyObject *elapsed = elapsed_seconds(PyTuple_GET_ITEM(started, 3), &seconds) < 0
                            ? NULL
                            : PyFloat_FromDouble(seconds);
    if (elapsed == NULL || PyContextVar_Reset(current_var, PyTuple_GET_ITEM(started, 2)) < 0) {
        Py_XDECREF(elapsed);
        return NULL;
    }
    PyObject *points = PyObject_CallMethodOneArg(collector, s_points, elapsed);
    Py_DECREF(elapsed);
    int any = points ? PyObject_IsTrue(points) : -1;
    PyObject *result = any > 0 ? PyObject_CallMethodOneArg(monitoring, s_emit_all, points)
                               : any == 0 ? Py_NewRef(Py_None) : NULL;
    Py_XDECREF(points);
    return result;
}

static PyObject *
setup_handlers(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyDict_CheckExact(args[0]) || !PyContextVar_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "setup_handlers(finders: dict, python_begin, current: ContextVar)");
        return NULL;
    }
    Py_XSETREF(finders, Py_NewRef(args[0]));
    Py_XSETREF(python_begin, Py_NewRef(args[1]));
    Py_XSETREF(current_var, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

/* -- request points ---------------------------------------------------------------------- */

/* request_points.assign_id and .emit_points, and the request classes' __init__, in C. What
   they do not take themselves (an incoming LUNA-Request-Id to check, a route not cached yet,
   an error status, tags or fields added by the handler) they hand to the Python functions. */
static PyObject *header_key;     /* istr("LUNA-Request-Id") */
static PyObject *request_id_for; /* request_id.request_id_for */
static PyObject *python_emit_points;
static PyObject *s_start_ns, *s_start, *s_id, *s_more, *s_headers, *s_get, *s_entries, *s_emit,
    *s_requests, *s_request_id, *s_now_ns, *s_method;

/* Random version-4 UUIDs: 256 at a time from one os.urandom() call; request_id.py has a
   forked child forget those left (forget_uuids), as it does for its own. */
#define UUIDS_AT_ONCE 256
static unsigned char random_bits[16 * UUIDS_AT_ONCE];
static int uuids_left;

static PyObject *
forget_uuids(PyObject *module, PyObject *unused)
{
    uuids_left = 0;
    Py_RETURN_NONE;
}

/* The 36 characters of the next UUID into text. */
static int
next_uuid(char *text)
{
    if (uuids_left == 0) {
        PyObject *bits = PyObject_CallFunction(urandom, "n", (Py_ssize_t)sizeof random_bits);
        if (bits == NULL) {
            return -1;
        }
        if (!PyBytes_CheckExact(bits) || PyBytes_GET_SIZE(bits) != sizeof random_bits) {
            Py_DECREF(bits);
            PyErr_SetString(PyExc_OSError, "os.urandom gave fewer bytes than asked");
            return -1;
        }
        memcpy(random_bits, PyBytes_AS_STRING(bits), sizeof random_bits);
        Py_DECREF(bits);
        uuids_left = UUIDS_AT_ONCE;
    }
    const unsigned char *bits = random_bits + 16 * --uuids_left;
    static const char hex[] = "0123456789abcdef";
    for (int i = 0, at = 0; i < 16; i++) {
        unsigned char byte = bits[i];
        if (i == 6) {
            byte = (byte & 0x0F) | 0x40; /* version 4 */
        }
        else if (i == 8) {
            byte = (byte & 0x3F) | 0x80; /* variant 10 */
        }
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            text[at++] = '-';
        }
        text[at++] = hex[byte >> 4];
        text[at++] = hex[byte & 0x0F];
    }
    return 0;
}

/* "<seconds>,<uuid>" with a new random UUID. */
static PyObject *
make_request_id(long long seconds)
{
    char text[ASCII_CHARS + 36];
    Py_ssize_t count = format_int(text, 0, seconds, ',');
    if (next_uuid(text + count) < 0) {
        return NULL;
    }
    PyObject *id = PyUnicode_New(count + 36, 127); /* ASCII: copied, not decoded */
    if (id != NULL) {
        memcpy(PyUnicode_DATA(id), text, count + 36);
    }
    return id;
}

static PyObject *
new_request_id(PyObject *module, PyObject *seconds)
{
    long long value = PyLong_AsLongLong(seconds);
    if (value == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return make_request_id(value);
}

/* The attributes of a monitored request and of its hooks, read and written at their slots'
   offsets where the classes keep them in slots (the adapters' classes and RequestPoints do),
   as getattr and setattr would (slots are data descriptors, found first) but without a
   lookup, and without aiohttp's Python __setattr__; through getattr/setattr otherwise. The
   offsets are found once per class: its address and version tag (a class made later at
   the same address gets another tag). */
typedef struct {
    PyTypeObject *type; /* not held */
    unsigned int version;
    Py_ssize_t offset[4];
} SlotCache;

enum { START_NS, START, ID, MORE };
static PyObject **request_names[] = {&s_start_ns, &s_start, &s_id, &s_more};
enum { ENTRIES, EMIT, NOW_NS };
static PyObject **hooks_names[] = {&s_entries, &s_emit, &s_now_ns};
static SlotCache request_slots, hooks_slots;

/* 1 if ``object``'s class keeps every one of ``names`` in a slot (offsets in ``cache``). */
static int
find_slots(SlotCache *cache, PyObject *object, PyObject **names[], int count)
{
    PyTypeObject *type = Py_TYPE(object);
    if (cache->type == type && cache->version == type->tp_version_tag && cache->version != 0) {
        return 1;
    }
    cache->type = NULL;
    for (int i = 0; i < count; i++) {
        if ((cache->offset[i] = member_offset(type, _PyType_Lookup(type, *names[i]))) < 0) {
            return 0;
        }
    }
    if (type->tp_version_tag == 0) {
        return 0;
    }
    cache->type = type;
    cache->version = type->tp_version_tag;
    return 1;
}

static PyObject *
get_attribute(PyObject *object, const SlotCache *slots, PyObject **names[], int which)
{
    PyObject *value = slots ? SLOT(object, slots->offset[which]) : NULL;
    return value ? Py_NewRef(value) : PyObject_GetAttr(object, *names[which]);
}

static int
set_attribute(PyObject *object, const SlotCache *slots, PyObject **names[], int which,
              PyObject *value)
{
    if (slots == NULL) {
        return PyObject_SetAttr(object, *names[which], value);
    }
    Py_XSETREF(SLOT(object, slots->offset[which]), Py_NewRef(value));
    return 0;
}

/* The slots of a request (NULL: use getattr) and of hooks. */
#define REQUEST_SLOTS(request) \
    (find_slots(&request_slots, (request), request_names, 4) ? &request_slots : NULL)
#define HOOKS_SLOTS(hooks) (find_slots(&hooks_slots, (hooks), hooks_names, 3) ? &hooks_slots : NULL)

static PyObject *
assign_id(PyObject *module, PyObject *request)
{
    if (request_id_for == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "call setup_requests() first");
        return NULL;
    }
    const SlotCache *slots = REQUEST_SLOTS(request);
    long long nanoseconds;
    if (take_long_long(get_attribute(request, slots, request_names, START_NS), &nanoseconds) < 0) {
        return NULL;
    }
    long long seconds = nanoseconds / 1000000000LL;
    if (nanoseconds % 1000000000LL < 0) {
        seconds -= 1; /* floor, as // does */
    }
    PyObject *headers = PyObject_GetAttr(request, s_headers);
    PyObject *incoming = headers ? PyObject_CallMethodOneArg(headers, s_get, header_key) : NULL;
    Py_XDECREF(headers);
    if (incoming == NULL) {
        return NULL;
    }
    PyObject *request_id;
    if (incoming == Py_None) {
        request_id = make_request_id(seconds);
    }
    else {
        PyObject *when = PyLong_FromLongLong(seconds);
        request_id = when ? PyObject_CallFunctionObjArgs(request_id_for, incoming, when, NULL) : NULL;
        Py_XDECREF(when);
    }
    Py_DECREF(incoming);
    if (request_id == NULL || set_attribute(request, slots, request_names, ID, request_id) < 0) {
        Py_XDECREF(request_id);
        return NULL;
    }
    return request_id;
}

static PyObject *
emit_points(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6 || python_emit_points == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "emit_points(hooks, request, request_id, status, key, response)");
        return NULL;
    }
    PyObject *hooks = args[0], *request = args[1], *status = args[3];
    const SlotCache *slots = REQUEST_SLOTS(request), *hook_slots = HOOKS_SLOTS(hooks);
    PyObject *start_ns = get_attribute(request, slots, request_names, START_NS);
    if (start_ns == NULL || start_ns == Py_None) { /* None: a second response, no points */
        Py_XDECREF(start_ns);
        return start_ns ? Py_NewRef(Py_None) : NULL;
    }
    PyObject *more = NULL, *entries = NULL, *result = NULL, *start = NULL;
    PyObject *point = NULL, *emit = NULL, *entry = NULL;
    int overflow = 1;
    long code = PyLong_CheckExact(status) ? PyLong_AsLongAndOverflow(status, &overflow) : 0;
    if ((more = get_attribute(request, slots, request_names, MORE)) == NULL ||
        (entries = get_attribute(hooks, hook_slots, hooks_names, ENTRIES)) == NULL) {
        goto done;
    }
    /* held: the request's __setattr__ (aiohttp's is Python) runs before the entry is used */
    entry = PyDict_CheckExact(entries) ? Py_XNewRef(lookup(entries, args[4])) : NULL;
    if (overflow || code >= 400 || more != Py_None || entry == NULL || !PyTuple_CheckExact(entry) ||
        (PyTuple_GET_SIZE(entry) != 2 && PyTuple_GET_SIZE(entry) != 0)) {
        result = PyObject_Vectorcall(python_emit_points, args, nargs, NULL);
        goto done;
    }
    if (set_attribute(request, slots, request_names, START_NS, Py_None) < 0) {
        goto done;
    }
    if (PyTuple_GET_SIZE(entry) == 0) { /* an excluded route */
        result = Py_NewRef(Py_None);
        goto done;
    }
    PyObject *tags = PyTuple_GET_ITEM(entry, 0);
    double seconds;
    if ((start = get_attribute(request, slots, request_names, START)) == NULL ||
        elapsed_seconds(start, &seconds) < 0 ||
        (point = timed_point(s_requests, start_ns, tags, seconds, s_request_id, args[2])) == NULL ||
        (emit = get_attribute(hooks, hook_slots, hooks_names, EMIT)) == NULL) {
        goto done;
    }
    result = PyObject_CallOneArg(emit, point);
done:
    Py_DECREF(start_ns);
    Py_XDECREF(entry);
    Py_XDECREF(more);
    Py_XDECREF(entries);
    Py_XDECREF(start);
    Py_XDECREF(point);
    Py_XDECREF(emit);
    return result;
}

/* The start of a monitored request: the base class's __init__, then the timestamps (the
   ``__init__`` of the adapters' request classes in C); uses base_init and hooks. */
static PyObject *
start_hook_call(Method *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *base_init = self->uses[0], *hooks = self->uses[1];
    if (PyVectorcall_NARGS(nargsf) < 1) {
        PyErr_SetString(PyExc_TypeError, "__init__ needs the request");
        return NULL;
    }
    PyObject *result = PyObject_Vectorcall(base_init, args, nargsf, kwnames);
    if (result == NULL) {
        return NULL;
    }
    Py_DECREF(result);
    PyObject *request = args[0];
    const SlotCache *slots = REQUEST_SLOTS(request);
    PyObject *now_ns = get_attribute(hooks, HOOKS_SLOTS(hooks), hooks_names, NOW_NS);
    PyObject *start_ns = now_ns ? PyObject_CallNoArgs(now_ns) : NULL;
    PyObject *start = start_ns ? PyLong_FromLongLong(monotonic_ns()) : NULL;
    int failed = start == NULL ||
                 set_attribute(request, slots, request_names, START_NS, start_ns) < 0 ||
                 set_attribute(request, slots, request_names, START, start) < 0 ||
                 set_attribute(request, slots, request_names, ID, Py_None) < 0 ||
                 set_attribute(request, slots, request_names, MORE, Py_None) < 0;
    Py_XDECREF(now_ns);
    Py_XDECREF(start_ns);
    Py_XDECREF(start);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
start_hook(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "start_hook(python_init, base_init, hooks)");
        return NULL;
    }
    return new_method(args[0], (vectorcallfunc)start_hook_call, args + 1, 2);
}

/* The response of a monitored request: the LUNA-Request-Id header, the points, then the base
   class's hook (the adapters' ``respond``/``_prepare_hook`` in C). A call with other
   arguments than the response, no response, or a websocket's (101) goes to the Python hook.
   Uses base_hook, hooks, header_name, header_type and route_attrs. */

/* The route part of a request's cache key: the last of route_attrs read in a chain from the
   request, or False when one before it is None. New reference. */
static PyObject *
route_part(PyObject *request, PyObject *route_attrs)
{
    PyObject *value = Py_NewRef(request);
    Py_ssize_t count = PyTuple_GET_SIZE(route_attrs);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i > 0 && value == Py_None) {
            Py_DECREF(value);
            return Py_NewRef(Py_False);
        }
        Py_SETREF(value, PyObject_GetAttr(value, PyTuple_GET_ITEM(route_attrs, i)));
        if (value == NULL) {
            return NULL;
        }
    }
    return value;
}

static PyObject *
response_hook_call(Method *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    PyObject *base_hook = self->uses[0], *hooks = self->uses[1], *header_name = self->uses[2];
    PyObject *header_type = self->uses[3], *route_attrs = self->uses[4];
    PyObject *status_name = PyTuple_GET_ITEM(self->uses[5], 0);
    PyObject *headers_name = PyTuple_GET_ITEM(self->uses[5], 1);
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL || args[1] == Py_None) {
        return PyObject_Vectorcall(self->python, args, nargsf, kwnames);
    }
    PyObject *request = args[0], *response = args[1];
    PyObject *status = PyObject_GetAttr(response, status_name);
    if (status == NULL) {
        return NULL;
    }
    if (PyLong_CheckExact(status) && PyLong_AsLong(status) == 101) {
        Py_DECREF(status);
        return PyObject_Vectorcall(self->python, args, nargsf, kwnames);
    }
    PyObject *result = NULL, *request_id, *value = NULL, *headers = NULL, *method = NULL;
    PyObject *part = NULL, *key = NULL, *emitted = NULL;
    request_id = get_attribute(request, REQUEST_SLOTS(request), request_names, ID);
    if (request_id == Py_None) {
        Py_SETREF(request_id, assign_id(NULL, request));
    }
    if (request_id == NULL ||
        (value = header_type == Py_None ? Py_NewRef(request_id)
                                         : PyObject_CallOneArg(header_type, request_id)) == NULL ||
        (headers = PyObject_GetAttr(response, headers_name)) == NULL ||
        PyObject_SetItem(headers, header_name, value) < 0 ||
        (method = PyObject_GetAttr(request, s_method)) == NULL ||
        (part = route_part(request, route_attrs)) == NULL ||
        (key = PyTuple_Pack(3, method, part, status)) == NULL) {
        goto done;
    }
    PyObject *emit_args[6] = {hooks, request, request_id, status, key, response};
    if ((emitted = emit_points(NULL, emit_args, 6)) != NULL) {
        result = PyObject_Vectorcall(base_hook, args, 2, NULL);
    }
done:
    Py_DECREF(status);
    Py_XDECREF(request_id);
    Py_XDECREF(value);
    Py_XDECREF(headers);
    Py_XDECREF(method);
    Py_XDECREF(part);
    Py_XDECREF(key);
    Py_XDECREF(emitted);
    return result;
}

static PyObject *
response_hook(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 || !PyCallable_Check(args[0]) || !PyCallable_Check(args[1]) ||
        !PyTuple_CheckExact(args[5]) || PyTuple_GET_SIZE(args[5]) < 1 ||
        !PyTuple_CheckExact(args[6]) || PyTuple_GET_SIZE(args[6]) != 2 ||
        !PyUnicode_CheckExact(PyTuple_GET_ITEM(args[6], 0)) ||
        !PyUnicode_CheckExact(PyTuple_GET_ITEM(args[6], 1)) || python_emit_points == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "response_hook(python_hook, base_hook, hooks, header_name, header_type, "
                        "route_attrs, (status_attr, headers_attr)), after setup_requests");
        return NULL;
    }
    return new_method(args[0], (vectorcallfunc)response_hook_call, args + 1, 6);
}

static PyObject *
setup_requests(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "setup_requests(header_key, request_id_for, emit_points)");
        return NULL;
    }
    Py_XSETREF(header_key, Py_NewRef(args[0]));
    Py_XSETREF(request_id_for, Py_NewRef(args[1]));
    Py_XSETREF(python_emit_points, Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

/* -- clock ------------------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    long long last, mask, offset, stride;
} UniqueClock;

static int
clock_init(UniqueClock *self, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"offset", "stride", NULL};
    long long offset = 0, stride = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|LL", names, &offset, &stride)) {
        return -1;
    }
    if (stride < 1 || offset < 0 || offset >= stride) {
        PyErr_Format(PyExc_ValueError, "need 0 <= offset < stride, got offset=%lld, stride=%lld",
                     offset, stride);
        return -1;
    }
    if (stride & (stride - 1)) {
        PyErr_Format(PyExc_ValueError, "stride must be a power of two, got %lld", stride);
        return -1;
    }
    self->offset = offset;
    self->stride = stride;
    self->mask = LLONG_MAX & ~(stride - 1);
    self->last = 0;
    return 0;
}

static PyObject *
clock_now_ns(UniqueClock *self, PyObject *unused)
{
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    long long value = ((long long)now.tv_sec * 1000000000LL + now.tv_nsec) & self->mask;
    value |= self->offset;
    if (value <= self->last) {
        value = self->last + self->stride;
    }
    self->last = value;
    return PyLong_FromLongLong(value);
}

static PyMethodDef clock_methods[] = {
    {"now_ns", (PyCFunction)clock_now_ns, METH_NOARGS,
     "The current time in ns, greater than every value returned before."},
    {NULL},
};

static PyTypeObject UniqueClockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "luna_monitoring.core._speedups.UniqueClock",
    .tp_doc = PyDoc_STR("Strictly increasing wall-clock nanoseconds, all congruent to offset "
                        "mod stride (compiled clock.UniqueClock)."),
    .tp_basicsize = sizeof(UniqueClock),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)clock_init,
    .tp_methods = clock_methods,
};

/* -- module ------------------------------------------------------------------------------ */

static PyMethodDef methods[] = {
    {"encode_lines", (PyCFunction)(void (*)(void))encode_lines, METH_FASTCALL,
     "encode_lines(encoder, points): the lines of a LineEncoder, cached points in C."},
    {"join_ascii_lines", (PyCFunction)join_ascii_lines, METH_O,
     "join_ascii_lines(lines): the body of a list of ASCII str lines, or None."},
    {"setup", (PyCFunction)(void (*)(void))setup, METH_FASTCALL,
     "setup(CountFields, dumps): the types and float writer encode_lines uses."},
    {"setup_timing", (PyCFunction)(void (*)(void))setup_timing, METH_FASTCALL,
     "setup_timing(checked_fields, numeric_fields): what Timing.set checks fields with."},
    {"setup_requests", (PyCFunction)(void (*)(void))setup_requests, METH_FASTCALL,
     "setup_requests(header_key, request_id_for, emit_points): what "
     "assign_id and emit_points use and hand over to."},
    {"forget_uuids", (PyCFunction)forget_uuids, METH_NOARGS,
     "forget_uuids(): draw new random bits for the next UUID (a forked child)."},
    {"new_request_id", (PyCFunction)new_request_id, METH_O,
     "new_request_id(unix_seconds): '<seconds>,<random version-4 UUID>' "
     "(request_id.new_request_id)."},
    {"start_hook", (PyCFunction)(void (*)(void))start_hook, METH_FASTCALL,
     "start_hook(python_init, base_init, hooks): python_init compiled for a request class: "
     "base_init, then the start timestamps from hooks._now_ns and CLOCK_MONOTONIC (perf_counter_ns)."},
    {"response_hook", (PyCFunction)(void (*)(void))response_hook, METH_FASTCALL,
     "response_hook(python_hook, base_hook, hooks, header_name, header_type, route_attrs, "
     "response_attrs): "
     "a request class's response hook: the id header (header_type(id), or the id if None), "
     "the points keyed by (method, the route_attrs chain, status), then base_hook."},
    {"assign_id", (PyCFunction)assign_id, METH_O,
     "assign_id(request): the request's id, made now (request_points.assign_id)."},
    {"emit_points", (PyCFunction)(void (*)(void))emit_points, METH_FASTCALL,
     "emit_points(hooks, request, request_id, status, key, response): "
     "request_points.emit_points."},
    {"setup_collector", (PyCFunction)(void (*)(void))setup_collector, METH_FASTCALL,
     "setup_collector(EstimationCollector, plain_estimators, usage_fields, no_usages, "
     "tag_sets): the class whose slots the compiled collector methods use, and their "
     "tables."},
    {"setup_buffer", (PyCFunction)setup_buffer, METH_O,
     "setup_buffer(Buffer): the class whose slots the compiled Buffer methods use."},
    {"setup_header_text", (PyCFunction)setup_header_text, METH_O,
     "setup_header_text(table): the sanitising table HeaderText.translate skips."},
    {"compiled_method", (PyCFunction)(void (*)(void))compiled_method, METH_FASTCALL,
     "compiled_method(qualified_name, python_method): the method (e.g. "
     "'Buffer.append') compiled for its common call, every other call to python_method."},
    {"setup_handlers", (PyCFunction)(void (*)(void))setup_handlers, METH_FASTCALL,
     "setup_handlers(finders, python_begin, current): what begin_handler and "
     "end_handler use and hand over to."},
    {"begin_handler", (PyCFunction)begin_handler, METH_O,
     "begin_handler(args): collector._python_begin."},
    {"end_handler", (PyCFunction)end_handler, METH_O,
     "end_handler(started): collector._python_end."},
    {"timing", (PyCFunction)(void (*)(void))new_timing, METH_FASTCALL,
     "timing(sink, clock, series, tags): a Timing that appends its point to sink."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "luna_monitoring.core._speedups",
    .m_doc = "Compiled hot paths: encoder, worker clock, Timing, request points.",
    .m_size = -1,
    .m_methods = methods,
};

/* ``module.name`` (a new reference), or NULL with the error set. */
static PyObject *
module_attribute(const char *module, const char *name)
{
    PyObject *imported = PyImport_ImportModule(module);
    PyObject *value = imported ? PyObject_GetAttrString(imported, name) : NULL;
    Py_XDECREF(imported);
    return value;
}

PyMODINIT_FUNC
PyInit__speedups(void)
{
    struct {
        PyObject **name;
        const char *text;
    } names[] = {
        {&execution_time, "execution_time"}, {&s_start_ns, "_luna_start_ns"},
        {&s_start, "_luna_start"}, {&s_id, "_luna_id"}, {&s_more, "_luna_more"},
        {&s_headers, "headers"}, {&s_get, "get"}, {&s_entries, "_entries"},
        {&s_emit, "_emit"}, {&s_requests, "requests"}, {&s_request_id, "request_id"},
        {&s_now_ns, "_now_ns"}, {&s_method, "method"},
        {&s_batch_size, "batch_size"}, {&s_format, "format"}, {&s_exif, "exif"},
        {&s_autorotated, "autorotated"}, {&s_image_load, "image_load"},
        {&s_sdkloop_task, "sdkloop_task"}, {&s_usages_statistic, "usages_statistic"},
        {&s_clock, "clock"}, {&s_now_ns_method, "now_ns"}, {&s_settings, "settings"},
        {&s_service, "service"}, {&s_points, "points"}, {&s_emit_all, "emit_all"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (*names[i].name == NULL &&
            (*names[i].name = PyUnicode_InternFromString(names[i].text)) == NULL) {
            return NULL;
        }
    }
    if (PyType_Ready(&UniqueClockType) < 0 || PyType_Ready(&TimingType) < 0 ||
        PyType_Ready(&MethodType) < 0 || PyType_Ready(&TimedPointType) < 0) {
        return NULL;
    }
    PyObject *deque = NULL;
    if ((urandom == NULL && (urandom = module_attribute("os", "urandom")) == NULL) ||
        (deque_append == NULL &&
         ((deque = module_attribute("collections", "deque")) == NULL ||
          (deque_append = PyObject_GetAttrString(deque, "append")) == NULL ||
          (deque_extend = PyObject_GetAttrString(deque, "extend")) == NULL))) {
        Py_XDECREF(deque);
        return NULL;
    }
    Py_XDECREF(deque);
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "UniqueClock", (PyObject *)&UniqueClockType) < 0 ||
        PyModule_AddObjectRef(m, "Timing", (PyObject *)&TimingType) < 0 ||
        PyModule_AddObjectRef(m, "TimedPoint", (PyObject *)&TimedPointType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
