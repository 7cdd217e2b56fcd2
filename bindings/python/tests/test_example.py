"""Example, parse helpers and Reader."""
import os
import tempfile
import unittest

import _support  # noqa: F401
import onlinetrain as ot


class ExampleTest(unittest.TestCase):
    def test_parse_vw_line(self):
        with ot.Example.parse("1 2.5 'imp7|user u1 |item i2:0.5 |ctx") as ex:
            self.assertEqual(ex.label, 1.0)
            self.assertEqual(ex.weight, 2.5)
            self.assertEqual(ex.tag, b"imp7")
            feats = ex.features
            self.assertEqual(len(feats), 2)
            self.assertEqual(len(ex), 2)
            self.assertEqual([f[0] for f in feats], [ord("u"), ord("i")])
            self.assertEqual(feats[1][2], 0.5)

    def test_features_by_name_hash_as_the_parser_does(self):
        with ot.Example.parse("|user u1 |item i2:0.5") as parsed, ot.Example() as built:
            built.add_feature("u1", 1.0, "user")
            built.add_feature("i2", 0.5, "item")
            self.assertEqual(built.features, parsed.features)
            self.assertIsNone(parsed.label)
            self.assertIsNone(built.label)

    def test_constructor_arguments(self):
        ex = ot.Example(label=-1, weight=0.5, tag="t", features={"user": ["u1"],
                                                                  "item": {"i2": 2.0}},
                        dense=[0.5, 1.5])
        self.assertEqual(ex.label, -1.0)
        self.assertEqual(ex.weight, 0.5)
        self.assertEqual(ex.tag, b"t")
        self.assertEqual(len(ex.features), 2)
        self.assertEqual(ex.dense, [0.5, 1.5])
        ex.clear()
        self.assertIsNone(ex.label)
        self.assertEqual(ex.weight, 1.0)
        self.assertEqual(ex.features, [])
        self.assertEqual(ex.dense, [])
        ex.add_hashed("a", 12345, 3.0)
        self.assertEqual(ex.features, [(ord("a"), 12345, 3.0)])
        ex.close()

    def test_libsvm(self):
        with ot.Example.parse("1 3:0.5 7:1", format="libsvm") as ex:
            self.assertEqual(ex.label, 1.0)
            self.assertEqual(len(ex.features), 2)
        with ot.Config(format="libsvm") as c:
            with ot.Example.parse("0 1:2", config=c) as ex:
                self.assertEqual(ex.label, 0.0)

    def test_bad_text_and_values(self):
        with self.assertRaises(ot.OnlineTrainError) as cm:
            ot.Example.parse("1 |user a:1.2.3")
        self.assertEqual(cm.exception.status, ot.OT_EFORMAT)
        self.assertIn("column", cm.exception.errmsg)
        with ot.Example() as ex:
            with self.assertRaises(ot.OnlineTrainError) as cm:
                ex.label = float("nan")
            self.assertEqual(cm.exception.status, ot.OT_ENONFINITE)
            with self.assertRaises(ot.OnlineTrainError) as cm:
                ex.weight = -1
            self.assertEqual(cm.exception.status, ot.OT_ERANGE)
            with self.assertRaises(ot.OnlineTrainError) as cm:
                ex.add_feature("", 1.0)
            self.assertEqual(cm.exception.status, ot.OT_EINVAL)
            with self.assertRaises(ot.OnlineTrainError) as cm:
                ex.set_text("1 |a b", format="csv")
            self.assertEqual(cm.exception.status, ot.OT_EINVAL)

    def test_parse_examples_skips_blank_and_comment_lines(self):
        exs = ot.parse_examples("1 |a x\n\n# a comment\n-1 |a y\n")
        self.assertEqual([e.label for e in exs], [1.0, -1.0])
        for e in exs:
            e.close()
        with self.assertRaises(ot.OnlineTrainError):
            ot.parse_examples(["1 |a x", "1 |a x:1.2.3"])

    def test_reader_from_memory_and_file(self):
        data = b"1 |a x\n-1 |a y\nnot a label |a z\n1 |a w\n"
        with ot.Reader(data=data, on_error="skip") as r:
            labels = [ex.label for ex in r]
            self.assertEqual(labels, [1.0, -1.0, 1.0])
            self.assertEqual(r.skipped, 1)
            self.assertEqual(r.line, 4)
        with ot.Reader(data=data) as r:
            it = iter(r)
            next(it)
            next(it)
            with self.assertRaises(ot.OnlineTrainError) as cm:
                next(it)
            self.assertEqual(cm.exception.status, ot.OT_EFORMAT)
            self.assertIn("line 3", cm.exception.errmsg)
        fd, path = tempfile.mkstemp(suffix=".vw")
        try:
            os.write(fd, b"1 |a x\n-1 |a y\n")
            os.close(fd)
            exs = ot.read_examples(path)
            self.assertEqual([e.label for e in exs], [1.0, -1.0])
        finally:
            os.unlink(path)
        with self.assertRaises(ot.OnlineTrainError) as cm:
            ot.Reader("/nonexistent/file.vw")
        self.assertEqual(cm.exception.status, ot.OT_ENOENT)
        with self.assertRaises(TypeError):
            ot.Reader()


if __name__ == "__main__":
    unittest.main()
