"""Config: options as keyword arguments, attributes and items; option errors."""
import unittest

import _support  # noqa: F401
import onlinetrain as ot


class ConfigTest(unittest.TestCase):
    def test_keyword_options_are_set_and_read_back(self):
        with ot.Config(bits=20, optimizer="sgd", learning_rate=0.25, quadratic="ui") as c:
            self.assertEqual(c.bits, 20)
            self.assertEqual(c["bits"], 20)
            self.assertEqual(c.optimizer, "sgd")
            self.assertEqual(c.learning_rate, 0.25)
            self.assertEqual(c.quadratic, "ui")
            c.bits = 12
            c["loss"] = "squared"
            self.assertEqual(c.bits, 12)
            self.assertEqual(c.loss, "squared")
            c.l2 = 1  # an int is accepted for a float option
            self.assertEqual(c.l2, 1.0)
            self.assertIsInstance(c.l2, float)
            c.set_text("bits", "14")
            self.assertEqual(c.bits, 14)

    def test_every_library_option_is_exposed(self):
        infos = ot.options()
        # Walk the library's own list: every option is there, with its type.
        self.assertIn("bits", infos)
        self.assertEqual(infos["bits"].python_type, int)
        self.assertEqual(infos["bits"].bounds, (1, 30))
        self.assertEqual(infos["bits"].default, 18)
        self.assertEqual(infos["optimizer"].choices, ("sgd", "adagrad", "ftrl"))
        self.assertEqual(infos["learning_rate"].python_type, float)
        with ot.Config() as c:
            d = c.to_dict()
            self.assertEqual(set(d), set(infos))
            for name, info in infos.items():
                self.assertEqual(d[name], info.default, name)
                self.assertIsInstance(d[name], info.python_type, name)
                # attribute access exists for each option
                self.assertEqual(getattr(c, name), info.default, name)
                self.assertTrue(info.doc, name)

    def test_unknown_option_name(self):
        with self.assertRaises(ot.OnlineTrainError) as cm:
            ot.Config(bitz=3)
        e = cm.exception
        self.assertEqual(e.status, ot.OT_ENOTSUP)
        self.assertEqual(e.name, "OT_ENOTSUP")
        self.assertIn("bitz", e.errmsg)
        with ot.Config() as c:
            with self.assertRaises(ot.OnlineTrainError) as cm:
                c["no_such_option"]
            self.assertEqual(cm.exception.status, ot.OT_ENOTSUP)
            with self.assertRaises(AttributeError):
                c.no_such_option

    def test_bad_type(self):
        for kw in ({"bits": "twenty"}, {"bits": 2.5}, {"optimizer": 3}, {"bits": [1]},
                   {"learning_rate": "fast"}, {"bits": None}):
            with self.assertRaises(ot.OnlineTrainError, msg=str(kw)) as cm:
                ot.Config(**kw)
            self.assertEqual(cm.exception.status, ot.OT_EBADTYPE, kw)
            self.assertEqual(cm.exception.name, "OT_EBADTYPE")

    def test_out_of_range(self):
        for kw in ({"bits": 31}, {"bits": 0}, {"optimizer": "adam"}, {"learning_rate": -1.0},
                   {"learning_rate": float("nan")}, {"bits": 1 << 70}):
            with self.assertRaises(ot.OnlineTrainError, msg=str(kw)) as cm:
                ot.Config(**kw)
            self.assertEqual(cm.exception.status, ot.OT_ERANGE, kw)
            self.assertEqual(cm.exception.name, "OT_ERANGE")
        with self.assertRaises(ot.OnlineTrainError) as cm:
            ot.Config(bits=99)
        self.assertIn("99", cm.exception.errmsg)  # the config's detail message
        self.assertIn("OT_ERANGE", str(cm.exception))

    def test_validate_reports_the_reason(self):
        with ot.Config(rt_interval_ms=100, full_interval_ms=500) as c:
            with self.assertRaises(ot.OnlineTrainError) as cm:
                c.validate()
            self.assertEqual(cm.exception.status, ot.OT_EINVAL)
            self.assertTrue(cm.exception.errmsg)
            c.full_interval_ms = 1000
            c.validate()

    def test_clone_is_independent(self):
        with ot.Config(bits=10) as a:
            b = a.clone()
            b.bits = 11
            self.assertEqual(a.bits, 10)
            self.assertEqual(b.bits, 11)
            b.close()

    def test_status_table_and_module_helpers(self):
        self.assertEqual(ot.STATUS["OT_OK"], 0)
        self.assertEqual(ot.OT_EINVAL, 1)
        self.assertEqual(ot.status_name(ot.OT_ECLOSED), "OT_ECLOSED")
        self.assertEqual(ot.status_name(-5), "OT_UNKNOWN")
        self.assertEqual(ot.strerror(12345), "unknown status")
        self.assertGreaterEqual(len(ot.STATUS), 25)
        self.assertRegex(ot.version(), r"^\d+\.\d+\.\d+$")
        self.assertIn(ot.version(), ot.build_info())
        self.assertEqual(ot.hash(b"abc"), ot.hash("abc"))
        self.assertNotEqual(ot.hash("abc", 1), ot.hash("abc", 2))


if __name__ == "__main__":
    unittest.main()
