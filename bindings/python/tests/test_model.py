"""Model: learning, predictions (lists and NumPy arrays), save and load."""
import os
import sys
import tempfile
import unittest

import _support
import onlinetrain as ot


class ModelTest(unittest.TestCase):
    def setUp(self):
        self.examples = ot.parse_examples([_support.click(i) for i in range(2000)])

    def tearDown(self):
        for ex in self.examples:
            ex.close()

    def test_learns_the_click_rule(self):
        with ot.Model(bits=16, optimizer="ftrl") as m:
            losses = [m.learn(ex) for ex in self.examples]
            self.assertEqual(m.examples, 2000)
            self.assertLess(sum(losses[-200:]) / 200, sum(losses[:200]) / 200)
            with ot.Example.parse("|user u3 |item i4") as even, \
                    ot.Example.parse("|user u3 |item i7") as odd:
                self.assertGreater(m.predict(even), 0.8)
                self.assertLess(m.predict(odd), 0.2)
            self.assertEqual(m.num_weights, (1 << 16) + 1)
            self.assertNotEqual(m.fingerprint, 0)
            names = [b["name"] for b in m.blocks()]
            self.assertIn("wide", names)

    def test_batches_as_lists_or_numpy(self):
        with ot.Model(bits=14) as m:
            losses = m.learn_batch(self.examples[:100], as_numpy=False)
            self.assertIsInstance(losses, list)
            self.assertEqual(len(losses), 100)
            preds = m.predict_batch(self.examples[:10], as_numpy=False)
            self.assertIsInstance(preds, list)
            one = [m.predict(ex) for ex in self.examples[:10]]
            for a, b in zip(preds, one):
                self.assertAlmostEqual(a, b, places=6)
            self.assertEqual(m.predict_batch([], as_numpy=False), [])
            if ot.numpy_available():
                import numpy
                arr = m.predict_batch(self.examples[:10])
                self.assertIsInstance(arr, numpy.ndarray)
                self.assertEqual(arr.dtype, numpy.float32)
                self.assertEqual(arr.shape, (10,))
                self.assertEqual(list(arr), preds)
                w = m.block_data(1)
                self.assertIsInstance(w, numpy.ndarray)
            else:
                # Without NumPy: lists by default, and asking for arrays says why not.
                self.assertIsInstance(m.predict_batch(self.examples[:3]), list)
                with self.assertRaises(ImportError):
                    m.predict_batch(self.examples[:3], as_numpy=True)

    def test_lists_when_numpy_cannot_be_imported(self):
        saved = sys.modules.get("numpy", None)
        had = "numpy" in sys.modules
        sys.modules["numpy"] = None  # makes `import numpy` fail
        try:
            self.assertFalse(ot.numpy_available())
            with ot.Model(bits=12) as m:
                self.assertIsInstance(m.predict_batch(self.examples[:3]), list)
                self.assertIsInstance(m.block_data(0), list)
        finally:
            if had:
                sys.modules["numpy"] = saved
            else:
                del sys.modules["numpy"]

    def test_save_load_and_clone(self):
        with ot.Model(bits=12) as m:
            for ex in self.examples[:500]:
                m.learn(ex)
            fd, path = tempfile.mkstemp(suffix=".otm")
            os.close(fd)
            try:
                m.save(path, with_state=True)
                with ot.Model.load(path) as loaded, m.clone() as copy:
                    for ex in self.examples[:20]:
                        self.assertEqual(loaded.predict(ex), m.predict(ex))
                        self.assertEqual(copy.predict(ex), m.predict(ex))
                    self.assertEqual(loaded.fingerprint, m.fingerprint)
                    self.assertEqual(loaded.examples, 500)
                    copy.learn(self.examples[0])
                    self.assertEqual(m.examples, 500)  # the copy is independent
                    self.assertEqual(loaded.block_data(1, as_numpy=False),
                                     m.block_data(1, as_numpy=False))
            finally:
                os.unlink(path)
            with self.assertRaises(ot.OnlineTrainError) as cm:
                ot.Model.load("/nonexistent/model.otm")
            self.assertEqual(cm.exception.status, ot.OT_ENOENT)

    def test_errors(self):
        with self.assertRaises(ot.OnlineTrainError) as cm:
            ot.Model(hidden_layers="8")  # a deep part without input
        self.assertEqual(cm.exception.status, ot.OT_EINVAL)
        with ot.Model(bits=10) as m, ot.Example.parse("|a x") as unlabelled:
            with self.assertRaises(ot.OnlineTrainError) as cm:
                m.learn(unlabelled)
            self.assertEqual(cm.exception.status, ot.OT_EINVAL)
            self.assertTrue(cm.exception.errmsg)
            with self.assertRaises(TypeError):
                m.predict("1 |a x")  # a string is not an Example
            with self.assertRaises(TypeError):
                m.predict_batch([unlabelled, None])


if __name__ == "__main__":
    unittest.main()
