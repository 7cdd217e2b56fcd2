"""Loading libonlinetrain and declaring its C functions for ctypes.

Only this module knows C types.  The library is found, in order:

1. the path in the environment variable ONLINETRAIN_LIB (a file, or a
   directory holding libonlinetrain.so);
2. when the package is used from the source tree, the tree's build/
   directory (bindings/python/onlinetrain -> ../../../build);
3. ctypes.util.find_library("onlinetrain"): an installed library.
"""

import ctypes
import ctypes.util
import os

LIBRARY_NAME = "libonlinetrain.so"


def _candidates():
    env = os.environ.get("ONLINETRAIN_LIB")
    if env:
        if os.path.isdir(env):
            env = os.path.join(env, LIBRARY_NAME)
        # Given explicitly: only this one, so a wrong path is reported.
        return [env], True
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.normpath(os.path.join(here, "..", "..", "..", "build", LIBRARY_NAME))
    found = []
    if os.path.exists(tree):
        found.append(tree)
    installed = ctypes.util.find_library("onlinetrain")
    if installed:
        found.append(installed)
    return found, False


def _load():
    paths, explicit = _candidates()
    errors = []
    for path in paths:
        try:
            return ctypes.CDLL(path), path
        except OSError as e:
            errors.append("%s: %s" % (path, e))
    if explicit:
        raise ImportError("onlinetrain: cannot load ONLINETRAIN_LIB (%s)" % "; ".join(errors))
    raise ImportError(
        "onlinetrain: libonlinetrain not found (%s); build it with `make` in the source tree, "
        "install it, or set ONLINETRAIN_LIB to its path"
        % ("; ".join(errors) if errors else "no build/ directory next to the package and "
           "none installed"))


lib, path = _load()

# ---- C types ---------------------------------------------------------------------------
# Each handle is its own incomplete struct type, so ctypes refuses to pass
# one kind of handle where another is expected.


class ot_config(ctypes.Structure):
    pass


class ot_example(ctypes.Structure):
    pass


class ot_reader(ctypes.Structure):
    pass


class ot_model(ctypes.Structure):
    pass


class ot_param_server(ctypes.Structure):
    pass


class ot_trainer(ctypes.Structure):
    pass


class ot_predictor(ctypes.Structure):
    pass


P = ctypes.POINTER
c_int, c_double, c_float = ctypes.c_int, ctypes.c_double, ctypes.c_float
c_size_t, c_char_p, c_void_p = ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p
c_int32, c_int64 = ctypes.c_int32, ctypes.c_int64
c_uint8, c_uint32, c_uint64 = ctypes.c_uint8, ctypes.c_uint32, ctypes.c_uint64
Config, Example, Reader, Model = P(ot_config), P(ot_example), P(ot_reader), P(ot_model)
ParamServer, Trainer, Predictor = P(ot_param_server), P(ot_trainer), P(ot_predictor)
Examples = P(Example)  # const ot_example *const *

_PROTOTYPES = [
    # core
    ("ot_strerror", c_char_p, [c_int]),
    ("ot_status_name", c_char_p, [c_int]),
    ("ot_version", c_uint32, []),
    ("ot_version_string", c_char_p, []),
    ("ot_build_info", c_char_p, []),
    # config and option introspection
    ("ot_config_create", c_int, [P(Config)]),
    ("ot_config_clone", c_int, [Config, P(Config)]),
    ("ot_config_destroy", None, [Config]),
    ("ot_config_set_i64", c_int, [Config, c_int, c_int64]),
    ("ot_config_set_f64", c_int, [Config, c_int, c_double]),
    ("ot_config_set_str", c_int, [Config, c_int, c_char_p]),
    ("ot_config_set_text", c_int, [Config, c_int, c_char_p]),
    ("ot_config_get_i64", c_int, [Config, c_int, P(c_int64)]),
    ("ot_config_get_f64", c_int, [Config, c_int, P(c_double)]),
    ("ot_config_get_str", c_int, [Config, c_int, P(c_char_p)]),
    ("ot_config_validate", c_int, [Config]),
    ("ot_config_errmsg", c_char_p, [Config]),
    ("ot_option_name", c_char_p, [c_int]),
    ("ot_option_by_name", c_int, [c_char_p, P(c_int)]),
    ("ot_option_type", c_int, [c_int]),
    ("ot_option_doc", c_char_p, [c_int]),
    ("ot_option_choices", c_char_p, [c_int]),
    ("ot_option_bounds_i64", c_int, [c_int, P(c_int64), P(c_int64)]),
    ("ot_option_bounds_f64", c_int, [c_int, P(c_double), P(c_double)]),
    ("ot_option_next", c_int, [c_int]),
    # examples
    ("ot_example_create", c_int, [Config, P(Example)]),
    ("ot_example_destroy", None, [Example]),
    ("ot_example_clear", None, [Example]),
    ("ot_example_set_label", c_int, [Example, c_float]),
    ("ot_example_set_weight", c_int, [Example, c_float]),
    ("ot_example_set_tag", c_int, [Example, c_char_p, c_size_t]),
    ("ot_example_add_hashed", c_int, [Example, c_uint8, c_uint32, c_float]),
    ("ot_example_add_feature", c_int, [Example, c_char_p, c_char_p, c_float]),
    ("ot_example_set_dense", c_int, [Example, P(c_float), c_size_t]),
    ("ot_example_has_label", c_int, [Example]),
    ("ot_example_label", c_float, [Example]),
    ("ot_example_weight", c_float, [Example]),
    ("ot_example_tag", c_void_p, [Example, P(c_size_t)]),
    ("ot_example_num_features", c_size_t, [Example]),
    ("ot_example_feature", c_int, [Example, c_size_t, P(c_uint8), P(c_uint32), P(c_float)]),
    ("ot_example_dense", P(c_float), [Example, P(c_size_t)]),
    ("ot_example_parse", c_int, [Example, c_char_p, c_char_p, c_size_t]),
    ("ot_example_errmsg", c_char_p, [Example]),
    ("ot_hash", c_uint32, [c_void_p, c_size_t, c_uint32]),
    # readers
    ("ot_reader_open_file", c_int, [Config, c_char_p, P(Reader)]),
    ("ot_reader_open_memory", c_int, [Config, c_void_p, c_size_t, P(Reader)]),
    ("ot_reader_next", c_int, [Reader, Example]),
    ("ot_reader_line", c_uint64, [Reader]),
    ("ot_reader_skipped", c_uint64, [Reader]),
    ("ot_reader_errmsg", c_char_p, [Reader]),
    ("ot_reader_close", None, [Reader]),
    # models
    ("ot_model_create", c_int, [Config, P(Model)]),
    ("ot_model_destroy", None, [Model]),
    ("ot_model_clone", c_int, [Model, P(Model)]),
    ("ot_model_predict", c_int, [Model, Example, P(c_float)]),
    ("ot_model_predict_batch", c_int, [Model, Examples, c_size_t, P(c_float)]),
    ("ot_model_learn", c_int, [Model, Example, P(c_float)]),
    ("ot_model_learn_batch", c_int, [Model, Examples, c_size_t, P(c_float)]),
    ("ot_model_save", c_int, [Model, c_char_p, c_int]),
    ("ot_model_load", c_int, [Config, c_char_p, P(Model)]),
    ("ot_model_fingerprint", c_uint64, [Model]),
    ("ot_model_num_weights", c_uint64, [Model]),
    ("ot_model_num_blocks", c_size_t, [Model]),
    ("ot_model_block_info", c_int, [Model, c_size_t, P(c_char_p), P(c_int), P(c_uint64),
                                    P(c_uint64), P(c_uint32), P(c_int)]),
    ("ot_model_block_data", c_int, [Model, c_size_t, c_int, P(P(c_float))]),
    ("ot_model_examples", c_uint64, [Model]),
    ("ot_model_errmsg", c_char_p, [Model]),
    # parameter server
    ("ot_param_server_create", c_int, [Config, P(ParamServer)]),
    ("ot_param_server_listen", c_int, [ParamServer, c_char_p, c_char_p]),
    ("ot_param_server_url", c_char_p, [ParamServer, c_int]),
    ("ot_param_server_start", c_int, [ParamServer]),
    ("ot_param_server_publish", c_int, [ParamServer, c_int]),
    ("ot_param_server_stop", c_int, [ParamServer]),
    ("ot_param_server_destroy", None, [ParamServer]),
    ("ot_param_server_version", c_uint64, [ParamServer]),
    ("ot_param_server_copy_model", c_int, [ParamServer, P(Model)]),
    ("ot_param_server_stat", c_int, [ParamServer, c_char_p, P(c_double)]),
    ("ot_param_server_stat_name", c_char_p, [ParamServer, c_size_t]),
    ("ot_param_server_errmsg", c_char_p, [ParamServer]),
    ("ot_param_server_serve_metrics", c_int, [ParamServer, c_char_p]),
    # trainer
    ("ot_trainer_create", c_int, [Config, P(Trainer)]),
    ("ot_trainer_connect", c_int, [Trainer, c_char_p]),
    ("ot_trainer_learn", c_int, [Trainer, Example, P(c_float)]),
    ("ot_trainer_learn_batch", c_int, [Trainer, Examples, c_size_t, P(c_float)]),
    ("ot_trainer_sync", c_int, [Trainer]),
    ("ot_trainer_predict", c_int, [Trainer, Example, P(c_float)]),
    ("ot_trainer_model", Model, [Trainer]),
    ("ot_trainer_version", c_uint64, [Trainer]),
    ("ot_trainer_stat", c_int, [Trainer, c_char_p, P(c_double)]),
    ("ot_trainer_stat_name", c_char_p, [Trainer, c_size_t]),
    ("ot_trainer_errmsg", c_char_p, [Trainer]),
    ("ot_trainer_destroy", None, [Trainer]),
    ("ot_trainer_serve_metrics", c_int, [Trainer, c_char_p]),
    # predictor
    ("ot_predictor_create", c_int, [Config, P(Predictor)]),
    ("ot_predictor_subscribe", c_int, [Predictor, c_char_p, c_char_p]),
    ("ot_predictor_predict", c_int, [Predictor, Example, P(c_float)]),
    ("ot_predictor_predict_batch", c_int, [Predictor, Examples, c_size_t, P(c_float)]),
    ("ot_predictor_version", c_uint64, [Predictor]),
    ("ot_predictor_wait_version", c_int, [Predictor, c_uint64, c_int32]),
    ("ot_predictor_copy_model", c_int, [Predictor, P(Model)]),
    ("ot_predictor_stat", c_int, [Predictor, c_char_p, P(c_double)]),
    ("ot_predictor_stat_name", c_char_p, [Predictor, c_size_t]),
    ("ot_predictor_errmsg", c_char_p, [Predictor]),
    ("ot_predictor_stop", c_int, [Predictor]),
    ("ot_predictor_destroy", None, [Predictor]),
    ("ot_predictor_serve_metrics", c_int, [Predictor, c_char_p]),
]

OT_ENOTSUP = 3  # the status a function missing from the library reports

#: Functions this binding knows that the loaded library lacks (an older one).
missing = []


def _stub(name, restype):
    def call(*args):
        if restype is c_int:
            return OT_ENOTSUP
        raise AttributeError("%s is not in %s (an older libonlinetrain?)" % (name, path))
    call.__name__ = name
    return call


for _name, _restype, _argtypes in _PROTOTYPES:
    try:
        _f = getattr(lib, _name)
    except AttributeError:
        missing.append(_name)
        globals()[_name] = _stub(_name, _restype)
        continue
    _f.restype = _restype
    _f.argtypes = _argtypes
    globals()[_name] = _f
del _name, _restype, _argtypes
globals().pop("_f", None)

# Option types (enum ot_type) and model block arrays (enum ot_array).
TYPE_NONE, TYPE_I64, TYPE_F64, TYPE_STR = 0, 1, 2, 3


def text(p):
    """A C string (bytes or None) as str ("" for NULL)."""
    return p.decode("utf-8", "replace") if p is not None else ""


def cstr(s):
    """A Python str as a NUL-terminated UTF-8 C string."""
    if isinstance(s, bytes):
        b = s
    else:
        b = str(s).encode("utf-8")
    return b
