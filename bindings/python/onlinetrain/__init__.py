"""Python binding of libonlinetrain, over ctypes (no compiler needed).

Online training with a parameter server, trainers and predictors::

    import onlinetrain as ot

    with ot.ParamServer(bits=18) as ps, ot.Trainer(bits=18) as tr, \\
            ot.Predictor(bits=18) as pred:
        ps.listen("inproc://t", "inproc://p")
        ps.start()
        tr.connect("inproc://t")
        pred.subscribe("inproc://p", "inproc://t")
        tr.learn(ot.Example.parse("1 |user u1 |item i2"))
        tr.sync()
        pred.wait_version(tr.version, 5000)
        p = pred.predict(ot.Example.parse("|user u1 |item i2"))

Every handle class (Config, Example, Reader, Model, ParamServer, Trainer,
Predictor) has close() and is a context manager; a call on a closed handle
raises OnlineTrainError (status OT_ECLOSED) instead of crashing.  Each
failing call raises OnlineTrainError carrying the C status (.status, an
int), its name (.name, such as "OT_EINVAL") and the handle's detail message
(.errmsg).

Options are keyword arguments (Config(bits=20, optimizer="ftrl")), checked
by the library; the list comes from the library's option introspection, so
new options need no change here.  Batch predictions come back as NumPy
arrays when NumPy is importable (as_numpy=None), else as lists.

With NumPy, nothing is copied where a copy is not needed: the C library
writes batch results straight into the NumPy array that is returned (or
into a float32 array the caller passes as out=), and a C-contiguous
float32 array given as a dense vector is read by the library in place
(the library copies it into the example, as it copies every input).

Thread rules follow the C library's: ParamServer and Predictor calls may
come from many threads at once; Config, Example, Model and Trainer calls
are serialized by the binding (one at a time per object), so misuse from
several threads is slow rather than unsafe.  close() waits for calls in
progress on the object.
"""

import contextlib
import ctypes
import threading

from . import _native as _n

__all__ = [
    "OnlineTrainError", "Config", "Example", "Reader", "Model", "ParamServer", "Trainer",
    "Predictor", "OptionInfo", "options", "status_name", "strerror", "version", "build_info",
    "read_examples", "parse_examples", "numpy_available", "STATUS",
]

#: Path of the shared library in use.
library_path = _n.path

# ---- status codes and errors ----------------------------------------------------------


def status_name(status):
    """The status's symbolic name, such as "OT_EINVAL" ("OT_UNKNOWN" if none)."""
    return _n.text(_n.ot_status_name(int(status)))


def strerror(status):
    """The library's English message for a status."""
    return _n.text(_n.ot_strerror(int(status)))


def _scan_statuses():
    codes = {}
    for value in range(0, 1024):
        name = status_name(value)
        if name != "OT_UNKNOWN":
            codes[name] = value
    return codes


#: Every status code of the library, by name: {"OT_OK": 0, "OT_EINVAL": 1, ...}.
STATUS = _scan_statuses()
globals().update(STATUS)  # OT_OK, OT_EINVAL, ... as module constants
__all__ += sorted(STATUS)


class OnlineTrainError(Exception):
    """A libonlinetrain call failed.

    Attributes: status (int, an ot_status), name ("OT_EINVAL"), errmsg (the
    handle's detail message, "" when there is none).
    """

    def __init__(self, status, errmsg=""):
        self.status = int(status)
        self.name = status_name(self.status)
        self.errmsg = errmsg or ""
        text = "%s: %s" % (self.name, strerror(self.status))
        if self.errmsg:
            text += ": " + self.errmsg
        super().__init__(text)


def version():
    """The library's version string, "MAJOR.MINOR.PATCH"."""
    return _n.text(_n.ot_version_string())


def build_info():
    """One line about the library's build: version, nng, BLAS, features."""
    return _n.text(_n.ot_build_info())


__version__ = version()


def hash(data, seed=0):  # noqa: A001 - the library's name for it
    """32-bit MurmurHash3 of bytes (or a str, as UTF-8), as the parsers use."""
    b = _n.cstr(data)
    return int(_n.ot_hash(b, len(b), seed & 0xFFFFFFFF))


def numpy_available():
    """True when NumPy can be imported (batch predictions then come as arrays)."""
    return _numpy() is not None


def _numpy():
    try:
        import numpy
    except ImportError:
        return None
    return numpy


# ---- the handle base: lifetime and thread safety ----------------------------------------


class _Handle:
    """Owns one C handle.

    Calls hold the handle "shared" (any number at once) or "exclusive" (one,
    with no shared user); close() waits for both kinds to finish, then
    destroys the handle, so no call ever sees a destroyed one.
    """

    _kind = "handle"
    _destroy = None       # the C destroy function
    _errmsg_fn = None     # the C errmsg function, or None
    _exclusive_calls = True  # externally synchronized in C: serialize every call

    def __init__(self, h):
        self._h = h
        self._cv = threading.Condition(threading.Lock())
        self._readers = 0          # calls holding the handle shared
        self._writer = False       # a call holds it exclusive
        self._writers_waiting = 0  # readers wait for these (no writer starvation)
        self._closing = False      # close() has begun: new calls raise

    def _closed_error(self):
        return OnlineTrainError(STATUS["OT_ECLOSED"], "%s is closed" % type(self).__name__)

    @contextlib.contextmanager
    def _use(self, exclusive=None):
        if exclusive is None:
            exclusive = self._exclusive_calls
        cv = self._cv
        with cv:
            if exclusive:
                self._writers_waiting += 1
                try:
                    while (self._writer or self._readers) and not self._closing:
                        cv.wait()
                finally:
                    self._writers_waiting -= 1
            else:
                while (self._writer or self._writers_waiting) and not self._closing:
                    cv.wait()
            if self._closing or self._h is None:
                cv.notify_all()
                raise self._closed_error()
            if exclusive:
                self._writer = True
            else:
                self._readers += 1
        try:
            yield self._h
        finally:
            with cv:
                if exclusive:
                    self._writer = False
                else:
                    self._readers -= 1
                cv.notify_all()

    def _errmsg(self, h):
        if self._errmsg_fn is None or h is None:
            return ""
        return _n.text(type(self)._errmsg_fn(h))

    def _check(self, status, h):
        """Raises OnlineTrainError for a failed status (h: the live handle)."""
        if status != 0:
            raise OnlineTrainError(status, self._errmsg(h))

    @property
    def closed(self):
        """True once close() was called."""
        return self._closing or self._h is None

    def close(self):
        """Destroys the C handle, after the calls in progress end.  Idempotent.

        Calls that have not started yet when close() begins raise OT_ECLOSED.
        """
        cv = getattr(self, "_cv", None)
        if cv is None:
            return
        with cv:
            self._closing = True
            cv.notify_all()
            while self._writer or self._readers:
                cv.wait()
            h, self._h = self._h, None
        if h is not None:
            type(self)._destroy(h)

    def __enter__(self):
        with self._use(False):
            pass
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing sensible to do
            pass

    def __repr__(self):
        return "<onlinetrain.%s%s>" % (type(self).__name__, " closed" if self.closed else "")


def _guard_all(handles, exclusive=False):
    """Holds several argument handles for one call."""
    stack = contextlib.ExitStack()
    ptrs = []
    for obj in handles:
        ptrs.append(stack.enter_context(obj._use(exclusive)))
    return stack, ptrs


def _check_type(obj, cls, what):
    if not isinstance(obj, cls):
        raise TypeError("%s must be an onlinetrain.%s, not %s"
                        % (what, cls.__name__, type(obj).__name__))


# ---- options ---------------------------------------------------------------------------


class OptionInfo:
    """What the library says about one option (from introspection)."""

    __slots__ = ("id", "name", "type", "doc", "choices", "bounds", "default")

    def __init__(self, oid, name, otype, doc, choices, bounds, default):
        self.id, self.name, self.type, self.doc = oid, name, otype, doc
        self.choices, self.bounds, self.default = choices, bounds, default

    @property
    def python_type(self):
        return {_n.TYPE_I64: int, _n.TYPE_F64: float, _n.TYPE_STR: str}.get(self.type)

    def __repr__(self):
        return "OptionInfo(%r, %s, default=%r)" % (self.name, self.python_type.__name__,
                                                    self.default)


def _scan_options():
    found = {}
    cfg = _n.Config()
    if _n.ot_config_create(ctypes.byref(cfg)) != 0:
        raise MemoryError("ot_config_create failed")
    try:
        oid = _n.ot_option_next(0)
        while oid != 0:
            name = _n.text(_n.ot_option_name(oid))
            otype = _n.ot_option_type(oid)
            choices = _n.ot_option_choices(oid)
            choices = tuple(_n.text(choices).split("|")) if choices is not None else None
            bounds = None
            if otype == _n.TYPE_I64:
                lo, hi, v = _n.c_int64(), _n.c_int64(), _n.c_int64()
                _n.ot_option_bounds_i64(oid, ctypes.byref(lo), ctypes.byref(hi))
                _n.ot_config_get_i64(cfg, oid, ctypes.byref(v))
                bounds, default = (lo.value, hi.value), v.value
            elif otype == _n.TYPE_F64:
                lo, hi, v = _n.c_double(), _n.c_double(), _n.c_double()
                _n.ot_option_bounds_f64(oid, ctypes.byref(lo), ctypes.byref(hi))
                _n.ot_config_get_f64(cfg, oid, ctypes.byref(v))
                bounds, default = (lo.value, hi.value), v.value
            else:
                s = _n.c_char_p()
                _n.ot_config_get_str(cfg, oid, ctypes.byref(s))
                default = _n.text(s.value)
            found[name] = OptionInfo(oid, name, otype, _n.text(_n.ot_option_doc(oid)), choices,
                                     bounds, default)
            oid = _n.ot_option_next(oid)
    finally:
        _n.ot_config_destroy(cfg)
    return found


_OPTIONS = _scan_options()


def options():
    """Every option the library knows, by name: {name: OptionInfo}."""
    return dict(_OPTIONS)


# ---- Config ----------------------------------------------------------------------------


class Config(_Handle):
    """Options for models and roles: Config(bits=20, optimizer="ftrl").

    Every library option is a keyword argument, an attribute (cfg.bits) and
    an item (cfg["bits"]).  Values are checked when set: an unknown name
    raises OnlineTrainError OT_ENOTSUP, a value of the wrong type
    OT_EBADTYPE (an int is accepted for a float option), a value out of the
    option's bounds or choices OT_ERANGE.
    """

    _destroy = _n.ot_config_destroy
    _errmsg_fn = _n.ot_config_errmsg

    def __init__(self, **opts):
        h = _n.Config()
        st = _n.ot_config_create(ctypes.byref(h))
        if st != 0:
            raise OnlineTrainError(st)
        super().__init__(h)
        self.set(**opts)

    def set(self, **opts):
        """Sets several options; returns self."""
        for name, value in opts.items():
            self[name] = value
        return self

    @staticmethod
    def _info(name):
        info = _OPTIONS.get(name)
        if info is None:
            oid = _n.c_int()
            st = _n.ot_option_by_name(_n.cstr(name), ctypes.byref(oid))
            raise OnlineTrainError(st if st != 0 else STATUS["OT_ENOTSUP"],
                                   "unknown option %r" % (name,))
        return info

    def __setitem__(self, name, value):
        info = self._info(name)
        with self._use() as h:
            if isinstance(value, bool):
                value = int(value)
            if isinstance(value, int) and info.type == _n.TYPE_F64:
                value = float(value)
            if isinstance(value, int):
                if not -(1 << 63) <= value < (1 << 63):
                    raise OnlineTrainError(STATUS["OT_ERANGE"],
                                           "%s: %d does not fit in 64 bits" % (name, value))
                st = _n.ot_config_set_i64(h, info.id, value)
            elif isinstance(value, float):
                st = _n.ot_config_set_f64(h, info.id, value)
            elif isinstance(value, (str, bytes)):
                st = _n.ot_config_set_str(h, info.id, _n.cstr(value))
            else:
                raise OnlineTrainError(STATUS["OT_EBADTYPE"],
                                       "%s: a %s cannot be an option value"
                                       % (name, type(value).__name__))
            self._check(st, h)

    def __getitem__(self, name):
        info = self._info(name)
        with self._use() as h:
            if info.type == _n.TYPE_I64:
                v = _n.c_int64()
                self._check(_n.ot_config_get_i64(h, info.id, ctypes.byref(v)), h)
                return v.value
            if info.type == _n.TYPE_F64:
                v = _n.c_double()
                self._check(_n.ot_config_get_f64(h, info.id, ctypes.byref(v)), h)
                return v.value
            s = _n.c_char_p()
            self._check(_n.ot_config_get_str(h, info.id, ctypes.byref(s)), h)
            return _n.text(s.value)

    def set_text(self, name, text):
        """Sets an option from its text form ("18", "0.5", "ftrl"), as the CLI does."""
        info = self._info(name)
        with self._use() as h:
            self._check(_n.ot_config_set_text(h, info.id, _n.cstr(text)), h)

    def validate(self):
        """Checks the options against one another (OnlineTrainError OT_EINVAL if not)."""
        with self._use() as h:
            self._check(_n.ot_config_validate(h), h)

    def clone(self):
        """An independent copy."""
        with self._use() as h:
            out = _n.Config()
            self._check(_n.ot_config_clone(h, ctypes.byref(out)), h)
        c = Config.__new__(Config)
        _Handle.__init__(c, out)
        return c

    def to_dict(self):
        """Every option's current value."""
        return {name: self[name] for name in _OPTIONS}

    @staticmethod
    def options():
        """Every option, by name (see the module-level options())."""
        return options()


def _make_option_property(info):
    def get(self):
        return self[info.name]

    def put(self, value):
        self[info.name] = value

    doc = "%s (%s, default %r)" % (info.doc, info.python_type.__name__, info.default)
    if info.choices:
        doc += "; one of " + ", ".join(info.choices)
    return property(get, put, doc=doc)


for _info in _OPTIONS.values():
    # An option named like a method stays reachable as cfg["name"].
    if not hasattr(Config, _info.name) and _info.name.isidentifier():
        setattr(Config, _info.name, _make_option_property(_info))
del _info


@contextlib.contextmanager
def _config_for(config, opts):
    """A C config for a create call: `config` (a Config, or None) plus keyword options."""
    if config is not None:
        _check_type(config, Config, "config")
    if not opts:
        if config is None:
            yield None
        else:
            with config._use(False) as h:
                yield h
        return
    tmp = config.clone() if config is not None else Config()
    try:
        tmp.set(**opts)
        with tmp._use(False) as h:
            yield h
    finally:
        tmp.close()


# ---- Example ---------------------------------------------------------------------------


def _floats(values):
    """(pointer to float, n, owner) from a sequence or a NumPy array.

    A C-contiguous float32 array is passed by address (no copy); other
    arrays are converted once.  `owner` keeps the memory alive.
    """
    np = _numpy()
    if np is not None and isinstance(values, np.ndarray):
        values = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        if values.size == 0:
            return (ctypes.c_float * 1)(), 0, None
        return values.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), values.size, values
    values = list(values)
    arr = (ctypes.c_float * max(len(values), 1))(*values)
    return arr, len(values), arr


class Example(_Handle):
    """One example: label, importance weight, tag, sparse features, dense vector.

    Example(label=1, features={"user": ["u1"], "item": {"i2": 1.0}}) or
    Example.parse("1 |user u1 |item i2").  A namespace "" or None is VW's
    default namespace.
    """

    _destroy = _n.ot_example_destroy
    _errmsg_fn = _n.ot_example_errmsg

    def __init__(self, config=None, label=None, weight=None, features=None, tag=None,
                 dense=None):
        h = _n.Example()
        with _config_for(config, {}) as ch:
            st = _n.ot_example_create(ch, ctypes.byref(h))
        if st != 0:
            raise OnlineTrainError(st)
        super().__init__(h)
        if label is not None:
            self.label = label
        if weight is not None:
            self.weight = weight
        if tag is not None:
            self.tag = tag
        if features:
            for ns, feats in features.items():
                if isinstance(feats, dict):
                    for name, value in feats.items():
                        self.add_feature(name, value, ns)
                else:
                    for name in feats:
                        self.add_feature(name, 1.0, ns)
        if dense is not None:
            self.dense = dense

    @classmethod
    def parse(cls, line, format=None, config=None):
        """A new example from one line of text ("vw" or "libsvm"; None: the config's)."""
        ex = cls(config)
        try:
            ex.set_text(line, format)
        except BaseException:
            ex.close()
            raise
        return ex

    def set_text(self, line, format=None):
        """Refills this example from one line of text (OnlineTrainError OT_EFORMAT if bad)."""
        b = _n.cstr(line)
        with self._use() as h:
            fmt = _n.cstr(format) if format is not None else None
            self._check(_n.ot_example_parse(h, fmt, b, len(b)), h)

    def clear(self):
        """Empties the example: no label, weight 1, no tag, no features."""
        with self._use() as h:
            _n.ot_example_clear(h)

    def add_feature(self, name, value=1.0, namespace=None):
        """Adds a feature by name, hashed as the VW parser hashes it."""
        with self._use() as h:
            ns = _n.cstr(namespace) if namespace else None
            self._check(_n.ot_example_add_feature(h, ns, _n.cstr(name), float(value)), h)

    def add_hashed(self, namespace, feature_hash, value=1.0):
        """Adds a feature by hash; namespace is its first byte (a str or an int)."""
        ns = ord(namespace[0]) if isinstance(namespace, str) else int(namespace)
        with self._use() as h:
            self._check(_n.ot_example_add_hashed(h, ns & 0xFF, feature_hash & 0xFFFFFFFF,
                                                 float(value)), h)

    @property
    def label(self):
        """The label, or None when there is none."""
        with self._use() as h:
            return float(_n.ot_example_label(h)) if _n.ot_example_has_label(h) else None

    @label.setter
    def label(self, value):
        with self._use() as h:
            self._check(_n.ot_example_set_label(h, float(value)), h)

    @property
    def weight(self):
        """The importance weight (default 1)."""
        with self._use() as h:
            return float(_n.ot_example_weight(h))

    @weight.setter
    def weight(self, value):
        with self._use() as h:
            self._check(_n.ot_example_set_weight(h, float(value)), h)

    @property
    def tag(self):
        """The tag as bytes (b"" when there is none)."""
        with self._use() as h:
            n = _n.c_size_t()
            p = _n.ot_example_tag(h, ctypes.byref(n))
            return ctypes.string_at(p, n.value) if p and n.value else b""

    @tag.setter
    def tag(self, value):
        b = _n.cstr(value)
        with self._use() as h:
            self._check(_n.ot_example_set_tag(h, b, len(b)), h)

    @property
    def features(self):
        """The sparse features: a list of (namespace byte, hash, value)."""
        with self._use() as h:
            out = []
            ns, fh, v = _n.c_uint8(), _n.c_uint32(), _n.c_float()
            for i in range(_n.ot_example_num_features(h)):
                self._check(_n.ot_example_feature(h, i, ctypes.byref(ns), ctypes.byref(fh),
                                                  ctypes.byref(v)), h)
                out.append((ns.value, fh.value, v.value))
            return out

    def __len__(self):
        with self._use() as h:
            return int(_n.ot_example_num_features(h))

    @property
    def dense(self):
        """The dense vector as a list of floats ([] when there is none)."""
        with self._use() as h:
            n = _n.c_size_t()
            p = _n.ot_example_dense(h, ctypes.byref(n))
            return [p[i] for i in range(n.value)] if p else []

    @dense.setter
    def dense(self, values):
        ptr, n, owner = _floats(values)
        with self._use() as h:
            self._check(_n.ot_example_set_dense(h, ptr, n), h)
        del owner  # alive until the call returned


def parse_examples(lines, format=None, config=None):
    """Examples from lines of text (an iterable, or one string of several lines).

    Blank lines and lines starting with '#' are skipped, as the reader skips them.
    """
    if isinstance(lines, (str, bytes)):
        lines = _n.cstr(lines).splitlines()
    out = []
    try:
        for line in lines:
            b = _n.cstr(line).strip(b"\r\n")
            if not b.strip() or b.lstrip().startswith(b"#"):
                continue
            out.append(Example.parse(b, format, config))
    except BaseException:
        for ex in out:
            ex.close()
        raise
    return out


class Reader(_Handle):
    """Streams examples from a file ("-": standard input; ".gz" decompressed) or bytes.

    Iterating yields a new Example per line.  Options used: format, on_error,
    hash, max_line.
    """

    _destroy = _n.ot_reader_close
    _errmsg_fn = _n.ot_reader_errmsg

    def __init__(self, path=None, data=None, config=None, **opts):
        if (path is None) == (data is None):
            raise TypeError("give a path or data, not both")
        h = _n.Reader()
        with _config_for(config, opts) as ch:
            if path is not None:
                st = _n.ot_reader_open_file(ch, _n.cstr(path), ctypes.byref(h))
            else:
                b = _n.cstr(data)
                st = _n.ot_reader_open_memory(ch, b, len(b), ctypes.byref(h))
        if st != 0:
            raise OnlineTrainError(st, "cannot open %s" % (path if path is not None else "data"))
        super().__init__(h)

    def next_into(self, example):
        """Fills `example` with the next one; False at the end."""
        _check_type(example, Example, "example")
        with self._use() as h, example._use(True) as eh:
            st = _n.ot_reader_next(h, eh)
            if st == STATUS["OT_EEOF"]:
                return False
            self._check(st, h)
            return True

    def __iter__(self):
        while True:
            ex = Example()  # the reader's own hash and format options apply
            if not self.next_into(ex):
                ex.close()
                return
            yield ex

    @property
    def line(self):
        """Line number of the last line read (1-based)."""
        with self._use() as h:
            return int(_n.ot_reader_line(h))

    @property
    def skipped(self):
        """Bad lines skipped so far (on_error="skip")."""
        with self._use() as h:
            return int(_n.ot_reader_skipped(h))


def read_examples(path, config=None, **opts):
    """A list of every example in a file."""
    with Reader(path, config=config, **opts) as r:
        return list(r)


# ---- batches ---------------------------------------------------------------------------


def _example_array(examples):
    examples = list(examples)
    for i, ex in enumerate(examples):
        _check_type(ex, Example, "examples[%d]" % i)
    return examples


def _result_buffer(n, as_numpy, out):
    """Where a call writes n floats: (pointer for C, finish), finish() giving the result.

    out (a writable C-contiguous 1-D float32 NumPy array with room for n) is
    written in place and returned (out[:n] when it is longer); otherwise a
    new NumPy array (as_numpy, None meaning "when NumPy is importable") or a
    list.  No copy is made for NumPy results.
    """
    fp = ctypes.POINTER(ctypes.c_float)
    if out is not None:
        np = _numpy()
        if np is None or not isinstance(out, np.ndarray):
            raise TypeError("out must be a NumPy array, not %s" % type(out).__name__)
        if out.dtype != np.float32 or out.ndim != 1 or not out.flags.c_contiguous:
            raise TypeError("out must be a 1-D C-contiguous float32 array (got %s, shape %s)"
                            % (out.dtype, out.shape))
        if not out.flags.writeable:
            raise ValueError("out is read-only")
        if out.size < n:
            raise ValueError("out has room for %d results; the call gives %d" % (out.size, n))
        if out.size == 0:
            return (ctypes.c_float * 1)(), lambda: out
        return out.ctypes.data_as(fp), (lambda: out if out.size == n else out[:n])
    if as_numpy is None:
        as_numpy = numpy_available()
    if as_numpy:
        np = _numpy()
        if np is None:
            raise ImportError("as_numpy=True but numpy cannot be imported")
        arr = np.empty(max(n, 1), dtype=np.float32)
        return arr.ctypes.data_as(fp), (lambda: arr if n == arr.size else arr[:n])
    buf = (ctypes.c_float * max(n, 1))()
    return buf, lambda: [float(buf[i]) for i in range(n)]


def _batch_call(fn, h, examples, check, as_numpy, out):
    """Calls fn(h, ptrs, n, results) with the examples held shared; returns the results."""
    stack, ptrs = _guard_all(examples)
    with stack:
        n = len(ptrs)
        arr = (_n.Example * max(n, 1))(*ptrs)
        ptr, finish = _result_buffer(n, as_numpy, out)
        check(fn(h, arr, n, ptr))
    return finish()


# ---- Model -----------------------------------------------------------------------------


class Model(_Handle):
    """A model (wide, embeddings, deep) trained example by example.

    Model(bits=20, optimizer="ftrl"), Model(config), or Model.load(path).
    Calls are serialized per model, except predictions, which may run in
    several threads at once.
    """

    _destroy = _n.ot_model_destroy
    _errmsg_fn = _n.ot_model_errmsg

    def __init__(self, config=None, **opts):
        h = _n.Model()
        with _config_for(config, opts) as ch:
            st = _n.ot_model_create(ch, ctypes.byref(h))
        if st != 0:
            raise OnlineTrainError(st, "cannot create the model from these options")
        super().__init__(h)

    @classmethod
    def _wrap(cls, h):
        m = cls.__new__(cls)
        _Handle.__init__(m, h)
        return m

    @classmethod
    def load(cls, path, config=None):
        """Loads a model saved with save() (config: only its allocator would matter)."""
        h = _n.Model()
        with _config_for(config, {}) as ch:
            st = _n.ot_model_load(ch, _n.cstr(path), ctypes.byref(h))
        if st != 0:
            raise OnlineTrainError(st, "cannot load %s" % path)
        return cls._wrap(h)

    def save(self, path, with_state=False):
        """Saves to a file (atomically); with_state keeps the optimizer state too."""
        with self._use(False) as h:
            self._check(_n.ot_model_save(h, _n.cstr(path), 1 if with_state else 0), h)

    def clone(self):
        """An independent copy."""
        with self._use(False) as h:
            out = _n.Model()
            self._check(_n.ot_model_clone(h, ctypes.byref(out)), h)
        return Model._wrap(out)

    def predict(self, example):
        """The prediction for one example (a probability for logistic loss)."""
        _check_type(example, Example, "example")
        with self._use(False) as h, example._use(False) as eh:
            p = ctypes.c_float()
            self._check(_n.ot_model_predict(h, eh, ctypes.byref(p)), h)
            return p.value

    def predict_batch(self, examples, as_numpy=None, out=None):
        """Predictions for several examples (a NumPy array, or a list).

        out: a float32 NumPy array the predictions are written into (no copy).
        """
        examples = _example_array(examples)
        with self._use(False) as h:
            return _batch_call(_n.ot_model_predict_batch, h, examples,
                               lambda st: self._check(st, h), as_numpy, out)

    def learn(self, example):
        """Learns one labelled example; returns its loss before the update."""
        _check_type(example, Example, "example")
        with self._use(True) as h, example._use(False) as eh:
            loss = ctypes.c_float()
            self._check(_n.ot_model_learn(h, eh, ctypes.byref(loss)), h)
            return loss.value

    def learn_batch(self, examples, as_numpy=None, out=None):
        """Learns a mini-batch; returns each example's loss before its update.

        out: a float32 NumPy array the losses are written into (no copy).
        """
        examples = _example_array(examples)
        with self._use(True) as h:
            return _batch_call(_n.ot_model_learn_batch, h, examples,
                               lambda st: self._check(st, h), as_numpy, out)

    @property
    def fingerprint(self):
        """A 64-bit hash of the model's shape."""
        with self._use(False) as h:
            return int(_n.ot_model_fingerprint(h))

    @property
    def num_weights(self):
        """Size of the flat index space."""
        with self._use(False) as h:
            return int(_n.ot_model_num_weights(h))

    @property
    def examples(self):
        """Examples learned since creation (or load)."""
        with self._use(False) as h:
            return int(_n.ot_model_examples(h))

    def blocks(self):
        """The parameter blocks: a list of dicts (name, kind, offset, rows, cols, num_state)."""
        out = []
        with self._use(False) as h:
            for i in range(_n.ot_model_num_blocks(h)):
                name, kind = _n.c_char_p(), ctypes.c_int()
                off, rows = _n.c_uint64(), _n.c_uint64()
                cols, nstate = _n.c_uint32(), ctypes.c_int()
                self._check(_n.ot_model_block_info(
                    h, i, ctypes.byref(name), ctypes.byref(kind), ctypes.byref(off),
                    ctypes.byref(rows), ctypes.byref(cols), ctypes.byref(nstate)), h)
                out.append({"name": _n.text(name.value), "kind": kind.value,
                            "offset": off.value, "rows": rows.value, "cols": cols.value,
                            "num_state": nstate.value})
        return out

    def block_data(self, index, array=0, as_numpy=None):
        """A copy of block `index`'s array (0 weights, 1 and 2 optimizer state)."""
        with self._use(False) as h:
            rows, cols = _n.c_uint64(), _n.c_uint32()
            self._check(_n.ot_model_block_info(h, index, None, None, None, ctypes.byref(rows),
                                               ctypes.byref(cols), None), h)
            p = ctypes.POINTER(ctypes.c_float)()
            self._check(_n.ot_model_block_data(h, index, array, ctypes.byref(p)), h)
            n = rows.value * cols.value
            ptr, finish = _result_buffer(n, as_numpy, None)
            # The library's array lives only as long as the model: copied once.
            ctypes.memmove(ptr, p, n * ctypes.sizeof(ctypes.c_float))
        return finish()


# ---- roles -----------------------------------------------------------------------------


class _Role(_Handle):
    _stat_fn = None
    _stat_name_fn = None
    _metrics_fn = None

    def stat(self, name):
        """One stat by name (OnlineTrainError OT_ENOENT if there is none)."""
        with self._use() as h:
            v = ctypes.c_double()
            st = type(self)._stat_fn(h, _n.cstr(name), ctypes.byref(v))
            if st != 0:
                raise OnlineTrainError(st, "no stat %r" % (name,))
            return v.value

    def stats(self):
        """Every stat: {name: value}."""
        out = {}
        with self._use() as h:
            i = 0
            while True:
                name = type(self)._stat_name_fn(h, i)
                if name is None:
                    break
                v = ctypes.c_double()
                if type(self)._stat_fn(h, name, ctypes.byref(v)) == 0:
                    out[_n.text(name)] = v.value
                i += 1
        return out

    def serve_metrics(self, url):
        """Serves the stats at url ("http://HOST:PORT[/PATH]") in Prometheus' format."""
        with self._use() as h:
            self._check(type(self)._metrics_fn(h, _n.cstr(url)), h)


class ParamServer(_Role):
    """A parameter server: the master model, fed by trainers, published to predictors.

    ParamServer(config=None, **options); listen(trainer_url, predictor_url);
    start().  Its calls may come from any thread.
    """

    _destroy = _n.ot_param_server_destroy
    _errmsg_fn = _n.ot_param_server_errmsg
    _stat_fn = _n.ot_param_server_stat
    _stat_name_fn = _n.ot_param_server_stat_name
    _metrics_fn = _n.ot_param_server_serve_metrics
    _exclusive_calls = False

    def __init__(self, config=None, **opts):
        h = _n.ParamServer()
        with _config_for(config, opts) as ch:
            st = _n.ot_param_server_create(ch, ctypes.byref(h))
        if st != 0:
            raise OnlineTrainError(st, "cannot create the server (check Config.validate())")
        super().__init__(h)

    def listen(self, trainer_url, predictor_url=None):
        """Binds the trainers' URL and (optionally) the predictors' URL; port 0 picks one."""
        with self._use() as h:
            pu = _n.cstr(predictor_url) if predictor_url is not None else None
            self._check(_n.ot_param_server_listen(h, _n.cstr(trainer_url), pu), h)

    @property
    def trainer_url(self):
        """The bound trainer URL (port resolved), or None."""
        with self._use() as h:
            u = _n.ot_param_server_url(h, 0)
            return _n.text(u) if u is not None else None

    @property
    def predictor_url(self):
        """The bound predictor URL (port resolved), or None."""
        with self._use() as h:
            u = _n.ot_param_server_url(h, 1)
            return _n.text(u) if u is not None else None

    def start(self):
        """Starts serving trainers and publishing to predictors."""
        with self._use() as h:
            self._check(_n.ot_param_server_start(h), h)

    def publish(self, full=False):
        """Publishes a real-time (or a full) update now."""
        with self._use() as h:
            self._check(_n.ot_param_server_publish(h, 1 if full else 0), h)

    def stop(self):
        """Stops serving and publishing (idempotent)."""
        with self._use() as h:
            self._check(_n.ot_param_server_stop(h), h)

    @property
    def version(self):
        """The master version: deltas applied."""
        with self._use() as h:
            return int(_n.ot_param_server_version(h))

    def copy_model(self):
        """A copy of the master model."""
        with self._use() as h:
            out = _n.Model()
            self._check(_n.ot_param_server_copy_model(h, ctypes.byref(out)), h)
        return Model._wrap(out)


class Trainer(_Role):
    """A training worker: learns locally and syncs deltas with the server.

    Trainer(config=None, **options); connect(url); learn(example).  Calls are
    serialized by the binding (the C trainer is used by one thread at a time).
    """

    _destroy = _n.ot_trainer_destroy
    _errmsg_fn = _n.ot_trainer_errmsg
    _stat_fn = _n.ot_trainer_stat
    _stat_name_fn = _n.ot_trainer_stat_name
    _metrics_fn = _n.ot_trainer_serve_metrics

    def __init__(self, config=None, **opts):
        h = _n.Trainer()
        with _config_for(config, opts) as ch:
            st = _n.ot_trainer_create(ch, ctypes.byref(h))
        if st != 0:
            raise OnlineTrainError(st)
        super().__init__(h)

    def connect(self, url):
        """Connects to a server's trainer URL and loads its master model."""
        with self._use() as h:
            self._check(_n.ot_trainer_connect(h, _n.cstr(url)), h)

    def learn(self, example):
        """Learns one example (syncing when due); returns its loss before the update."""
        _check_type(example, Example, "example")
        with self._use() as h, example._use(False) as eh:
            loss = ctypes.c_float()
            self._check(_n.ot_trainer_learn(h, eh, ctypes.byref(loss)), h)
            return loss.value

    def learn_batch(self, examples, as_numpy=None, out=None):
        """Learns a mini-batch (syncing when due); returns the losses.

        out: a float32 NumPy array the losses are written into (no copy).
        """
        examples = _example_array(examples)
        with self._use() as h:
            return _batch_call(_n.ot_trainer_learn_batch, h, examples,
                               lambda st: self._check(st, h), as_numpy, out)

    def sync(self):
        """Sends the delta to the server now and applies its aggregated update."""
        with self._use() as h:
            self._check(_n.ot_trainer_sync(h), h)

    def predict(self, example):
        """A prediction with the local model."""
        _check_type(example, Example, "example")
        with self._use() as h, example._use(False) as eh:
            p = ctypes.c_float()
            self._check(_n.ot_trainer_predict(h, eh, ctypes.byref(p)), h)
            return p.value

    def model(self):
        """A copy of the local model (the C call lends it only until the next call)."""
        with self._use() as h:
            m = _n.ot_trainer_model(h)
            if not m:
                raise OnlineTrainError(STATUS["OT_ESTATE"], "no local model")
            out = _n.Model()
            self._check(_n.ot_model_clone(m, ctypes.byref(out)), h)
        return Model._wrap(out)

    @property
    def version(self):
        """The master version seen at the last sync."""
        with self._use() as h:
            return int(_n.ot_trainer_version(h))


class Predictor(_Role):
    """A prediction worker: serves a copy kept fresh by the server's updates.

    Predictor(config=None, **options); subscribe(predictor_url, trainer_url);
    predict(example).  Predictions may come from many threads at once.
    """

    _destroy = _n.ot_predictor_destroy
    _errmsg_fn = _n.ot_predictor_errmsg
    _stat_fn = _n.ot_predictor_stat
    _stat_name_fn = _n.ot_predictor_stat_name
    _metrics_fn = _n.ot_predictor_serve_metrics
    _exclusive_calls = False

    def __init__(self, config=None, **opts):
        h = _n.Predictor()
        with _config_for(config, opts) as ch:
            st = _n.ot_predictor_create(ch, ctypes.byref(h))
        if st != 0:
            raise OnlineTrainError(st)
        super().__init__(h)

    def subscribe(self, predictor_url, trainer_url):
        """Subscribes to a server's updates and loads a full copy."""
        with self._use() as h:
            self._check(_n.ot_predictor_subscribe(h, _n.cstr(predictor_url),
                                                  _n.cstr(trainer_url)), h)

    def predict(self, example):
        """A prediction with the model being served."""
        _check_type(example, Example, "example")
        with self._use() as h, example._use(False) as eh:
            p = ctypes.c_float()
            st = _n.ot_predictor_predict(h, eh, ctypes.byref(p))
            if st != 0:  # predict does not set the errmsg
                raise OnlineTrainError(st, "predict")
            return p.value

    def predict_batch(self, examples, as_numpy=None, out=None):
        """Predictions for several examples with one model (a NumPy array, or a list).

        out: a float32 NumPy array the predictions are written into (no copy).
        """
        examples = _example_array(examples)

        def check(st):
            if st != 0:
                raise OnlineTrainError(st, "predict_batch")
        with self._use() as h:
            return _batch_call(_n.ot_predictor_predict_batch, h, examples, check, as_numpy, out)

    @property
    def version(self):
        """The master version of the model being served."""
        with self._use() as h:
            return int(_n.ot_predictor_version(h))

    def wait_version(self, version, timeout_ms=5000):
        """Waits until the served version reaches `version`; False on timeout."""
        with self._use() as h:
            st = _n.ot_predictor_wait_version(h, int(version), int(timeout_ms))
            if st == STATUS["OT_ETIMEDOUT"]:
                return False
            if st != 0:
                raise OnlineTrainError(st, "wait_version")
            return True

    def copy_model(self):
        """A copy of the model being served."""
        with self._use() as h:
            out = _n.Model()
            self._check(_n.ot_predictor_copy_model(h, ctypes.byref(out)), h)
        return Model._wrap(out)

    def stop(self):
        """Stops receiving updates; the last model keeps being served."""
        with self._use() as h:
            self._check(_n.ot_predictor_stop(h), h)
