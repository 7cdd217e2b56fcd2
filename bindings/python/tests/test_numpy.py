"""NumPy: batch results as arrays the library writes into, dense vectors read in place.

"Zero-copy" is checked by address: a spy in front of the C function records
the pointer the binding passes, and the test compares it with the array's
own data address (and by writing through a caller's out= array).

When this interpreter has no NumPy, NumpyElsewhereTest runs NumpyTest under
another python3 that has it (OT_NUMPY_PYTHON, or the python3 programs on
PATH), and is skipped, with the reason printed, when there is none.
"""
import contextlib
import ctypes
import os
import subprocess
import sys
import unittest

import _support
import onlinetrain as ot
from onlinetrain import _native

try:
    import numpy
except ImportError:
    numpy = None

HERE = os.path.dirname(os.path.abspath(__file__))


def _address(p):
    """The address a ctypes pointer or array holds."""
    return ctypes.cast(p, ctypes.c_void_p).value


@contextlib.contextmanager
def _spy(name, arg_index, seen):
    """Records the address of argument `arg_index` of every call to _native.<name>."""
    real = getattr(_native, name)

    def spy(*args):
        seen.append(_address(args[arg_index]))
        return real(*args)
    setattr(_native, name, spy)
    try:
        yield
    finally:
        setattr(_native, name, real)


@unittest.skipIf(numpy is None, "NumPy is not installed for %s" % sys.executable)
class NumpyTest(unittest.TestCase):
    def setUp(self):
        self.examples = ot.parse_examples([_support.click(i) for i in range(400)])
        self.model = ot.Model(bits=14, optimizer="ftrl")
        self.model.learn_batch(self.examples, as_numpy=False)

    def tearDown(self):
        self.model.close()
        for ex in self.examples:
            ex.close()

    def test_results_are_written_into_the_returned_array(self):
        seen = []
        with _spy("ot_model_predict_batch", 3, seen):
            arr = self.model.predict_batch(self.examples[:50])
        self.assertIsInstance(arr, numpy.ndarray)
        self.assertEqual(arr.dtype, numpy.float32)
        self.assertEqual(arr.shape, (50,))
        self.assertEqual(seen, [arr.ctypes.data])  # the library wrote there: no copy
        self.assertTrue(arr.flags.writeable)
        want = [self.model.predict(ex) for ex in self.examples[:50]]
        self.assertEqual(arr.tolist(), want)
        self.assertEqual(self.model.predict_batch([]).shape, (0,))

    def test_out_array_is_written_through(self):
        out = numpy.full(10, -7.0, dtype=numpy.float32)
        got = self.model.predict_batch(self.examples[:10], out=out)
        self.assertIs(got, out)
        self.assertEqual(out.tolist(), [self.model.predict(ex) for ex in self.examples[:10]])
        # A longer array: a view of its first n entries, the rest untouched.
        big = numpy.full(16, -7.0, dtype=numpy.float32)
        seen = []
        with _spy("ot_model_predict_batch", 3, seen):
            view = self.model.predict_batch(self.examples[:5], out=big)
        self.assertEqual(seen, [big.ctypes.data])
        self.assertEqual(view.shape, (5,))
        self.assertTrue(numpy.shares_memory(view, big))
        self.assertEqual(big[:5].tolist(), out[:5].tolist())
        self.assertEqual(big[5:].tolist(), [-7.0] * 11)
        # Losses too, into a slice of a larger buffer (a view is an array).
        losses = numpy.zeros(8, dtype=numpy.float32)
        with ot.Model(bits=14) as m:
            r = m.learn_batch(self.examples[:4], out=losses[2:6])
            self.assertTrue(numpy.shares_memory(r, losses))
        self.assertEqual(losses[0], 0.0)
        self.assertEqual(losses[7], 0.0)
        self.assertTrue(all(x > 0.0 for x in losses[2:6]))

    def test_bad_out_arrays_raise(self):
        exs = self.examples[:4]
        with self.assertRaises(TypeError):
            self.model.predict_batch(exs, out=numpy.zeros(4, dtype=numpy.float64))
        with self.assertRaises(TypeError):
            self.model.predict_batch(exs, out=numpy.zeros((2, 2), dtype=numpy.float32))
        with self.assertRaises(TypeError):
            self.model.predict_batch(exs, out=numpy.zeros(8, dtype=numpy.float32)[::2])
        with self.assertRaises(TypeError):
            self.model.predict_batch(exs, out=[0.0] * 4)
        with self.assertRaises(ValueError):
            self.model.predict_batch(exs, out=numpy.zeros(3, dtype=numpy.float32))
        ro = numpy.zeros(4, dtype=numpy.float32)
        ro.flags.writeable = False
        with self.assertRaises(ValueError):
            self.model.predict_batch(exs, out=ro)
        self.assertEqual(ro.tolist(), [0.0] * 4)
        # The model still works after the refusals.
        self.assertEqual(self.model.predict_batch(exs, out=numpy.zeros(4, numpy.float32)).size, 4)

    def test_dense_float32_is_read_in_place(self):
        vec = numpy.arange(6, dtype=numpy.float32) / 4
        seen = []
        with ot.Example(label=1) as ex:
            with _spy("ot_example_set_dense", 1, seen):
                ex.dense = vec
                ex.dense = vec.astype(numpy.float64)  # converted: a new buffer
                ex.dense = vec[::2]                   # strided: made contiguous
            self.assertEqual(seen[0], vec.ctypes.data)
            self.assertNotEqual(seen[1], vec.ctypes.data)
            self.assertEqual(ex.dense, [0.0, 0.5, 1.0])
            ex.dense = vec.reshape(2, 3)  # 2-D contiguous: its 6 values, in place
            self.assertEqual(ex.dense, vec.tolist())
            ex.dense = numpy.zeros(0, dtype=numpy.float32)
            self.assertEqual(ex.dense, [])
        # The library copied the values: changing the array later changes nothing.
        with ot.Example(label=1, dense=vec) as ex:
            vec[0] = 42.0
            self.assertEqual(ex.dense[0], 0.0)

    def test_block_data_is_an_array_copy(self):
        w = self.model.block_data(1)
        self.assertIsInstance(w, numpy.ndarray)
        self.assertEqual(w.dtype, numpy.float32)
        blocks = self.model.blocks()
        self.assertEqual(w.size, blocks[1]["rows"] * blocks[1]["cols"])
        self.assertGreater(numpy.count_nonzero(w), 0)
        w[:] = 0.0  # ours: the model is unchanged
        self.assertGreater(numpy.count_nonzero(self.model.block_data(1)), 0)

    def test_roles_write_into_out(self):
        tu, pu = "inproc://" + _support.unique("np-t"), "inproc://" + _support.unique("np-p")
        opts = dict(bits=14, sync_every_examples=100, sync_interval_ms=0, rt_interval_ms=10,
                    full_interval_ms=1000)
        with ot.ParamServer(**opts) as ps, ot.Trainer(**opts) as tr, \
                ot.Predictor(**opts) as pred:
            ps.listen(tu, pu)
            ps.start()
            tr.connect(tu)
            pred.subscribe(pu, tu)
            losses = numpy.zeros(len(self.examples), dtype=numpy.float32)
            seen = []
            with _spy("ot_trainer_learn_batch", 3, seen):
                self.assertIs(tr.learn_batch(self.examples, out=losses), losses)
            self.assertEqual(seen, [losses.ctypes.data])
            self.assertGreater(float(losses.sum()), 0.0)
            tr.sync()
            pred.wait_version(tr.version, 10000)
            preds = numpy.zeros(20, dtype=numpy.float32)
            with _spy("ot_predictor_predict_batch", 3, seen):
                self.assertIs(pred.predict_batch(self.examples[:20], out=preds), preds)
            self.assertEqual(seen[-1], preds.ctypes.data)
            self.assertEqual(preds.tolist(), [pred.predict(ex) for ex in self.examples[:20]])
            even = [i for i in range(20) if (i % 10) % 2 == 0]
            self.assertGreater(float(preds[even].mean()), 0.5)


def _numpy_pythons():
    """Other python3 programs that can import NumPy: OT_NUMPY_PYTHON, then PATH's."""
    names = []
    if os.environ.get("OT_NUMPY_PYTHON"):
        names.append(os.environ["OT_NUMPY_PYTHON"])
    for d in os.environ.get("PATH", "").split(os.pathsep):
        p = os.path.join(d or ".", "python3")
        if os.access(p, os.X_OK) and not os.path.isdir(p):
            names.append(p)
    seen, out = set(), []
    for p in names:
        real = os.path.realpath(p)
        if real in seen or real == os.path.realpath(sys.executable):
            continue
        seen.add(real)
        try:
            ok = subprocess.run([p, "-c", "import numpy"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, timeout=60).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            out.append(p)
    return out


class NumpyElsewhereTest(unittest.TestCase):
    def test_numpy_tests_under_an_interpreter_with_numpy(self):
        if numpy is not None:
            self.skipTest("NumPy is importable here: NumpyTest ran in this interpreter")
        pythons = _numpy_pythons()
        if not pythons:
            reason = ("NumPy tests not run: %s has no NumPy and no other python3 with NumPy was "
                      "found (OT_NUMPY_PYTHON, PATH); `make deps-dev` installs python3-numpy"
                      % sys.executable)
            sys.stderr.write(reason + "\n")
            self.skipTest(reason)
        r = subprocess.run([pythons[0], "-m", "unittest", "-v", "test_numpy.NumpyTest"],
                           cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=600, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        text = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, "%s:\n%s" % (pythons[0], text[-3000:]))
        self.assertNotIn("skipped", text, text[-3000:])
        self.assertIn("Ran %d tests" % len(unittest.TestLoader().getTestCaseNames(NumpyTest)),
                      text)
        sys.stderr.write("(NumPy tests ran under %s) " % pythons[0])


if __name__ == "__main__":
    unittest.main()
