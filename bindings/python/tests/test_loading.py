"""How the package finds the library."""
import os
import subprocess
import sys
import unittest

import _support
import onlinetrain as ot


def run(env_lib):
    env = dict(os.environ)
    env["ONLINETRAIN_LIB"] = env_lib
    env["PYTHONPATH"] = _support.PACKAGE_ROOT
    return subprocess.run([sys.executable, "-c", "import onlinetrain as ot; print(ot.library_path)"],
                          env=env, capture_output=True, text=True, timeout=60)


class LoadingTest(unittest.TestCase):
    def test_env_var_names_a_file_or_a_directory(self):
        path = os.path.abspath(ot.library_path)
        r = run(path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), path)
        r = run(os.path.dirname(path))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), os.path.join(os.path.dirname(path), ot._native.LIBRARY_NAME))

    def test_a_wrong_env_var_is_reported(self):
        r = run("/nonexistent/libonlinetrain.so")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("ONLINETRAIN_LIB", r.stderr)
        self.assertIn("ImportError", r.stderr)

    def test_the_library_has_every_function_the_binding_declares(self):
        self.assertEqual(ot._native.missing, [])

    def test_handles_are_distinct_types(self):
        # ctypes refuses a handle of another kind (no void pointers).
        import ctypes
        with ot.Config() as c:
            with self.assertRaises(ctypes.ArgumentError):
                ot._native.ot_model_destroy(c._h)


if __name__ == "__main__":
    unittest.main()
