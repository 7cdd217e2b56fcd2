"""Every call on a closed handle raises OnlineTrainError OT_ECLOSED, never crashes."""
import threading
import time
import unittest

import _support
import onlinetrain as ot


def closed_error(test, fn, *args):
    with test.assertRaises(ot.OnlineTrainError) as cm:
        fn(*args)
    test.assertEqual(cm.exception.status, ot.OT_ECLOSED)
    test.assertEqual(cm.exception.name, "OT_ECLOSED")


class ClosedTest(unittest.TestCase):
    def test_config(self):
        c = ot.Config()
        c.close()
        c.close()  # idempotent
        self.assertTrue(c.closed)
        closed_error(self, lambda: c.bits)
        closed_error(self, setattr, c, "bits", 3)
        closed_error(self, c.__getitem__, "bits")
        closed_error(self, c.validate)
        closed_error(self, c.clone)
        closed_error(self, c.set_text, "bits", "3")
        closed_error(self, ot.Model, c)  # as an argument, too
        closed_error(self, ot.Trainer, c)

    def test_example(self):
        ex = ot.Example.parse("1 |a x")
        with ex:
            pass  # the context manager closes it
        self.assertTrue(ex.closed)
        closed_error(self, lambda: ex.label)
        closed_error(self, setattr, ex, "label", 1.0)
        closed_error(self, lambda: ex.features)
        closed_error(self, ex.add_feature, "y")
        closed_error(self, ex.set_text, "1 |a x")
        closed_error(self, ex.clear)
        closed_error(self, len, ex)
        with ot.Model(bits=8) as m:
            closed_error(self, m.predict, ex)
            closed_error(self, m.learn, ex)
            closed_error(self, m.predict_batch, [ex])

    def test_reader_and_model(self):
        r = ot.Reader(data=b"1 |a x\n")
        r.close()
        closed_error(self, list, r)
        closed_error(self, lambda: r.line)
        m = ot.Model(bits=8)
        m.close()
        with ot.Example.parse("1 |a x") as ex:
            closed_error(self, m.predict, ex)
            closed_error(self, m.learn, ex)
            closed_error(self, m.learn_batch, [ex])
        closed_error(self, m.save, "/tmp/never-written.otm")
        closed_error(self, m.clone)
        closed_error(self, m.blocks)
        closed_error(self, lambda: m.fingerprint)

    def test_roles(self):
        ps, tr, pred = ot.ParamServer(bits=8), ot.Trainer(bits=8), ot.Predictor(bits=8)
        for h in (ps, tr, pred):
            h.close()
            h.close()
            closed_error(self, h.stats)
            closed_error(self, h.stat, "version")
            closed_error(self, h.serve_metrics, "http://127.0.0.1:%d" % _support.free_port())
            closed_error(self, lambda: h.version)
        closed_error(self, ps.listen, "inproc://x")
        closed_error(self, ps.start)
        closed_error(self, ps.publish)
        closed_error(self, ps.stop)
        closed_error(self, ps.copy_model)
        closed_error(self, lambda: ps.trainer_url)
        with ot.Example.parse("1 |a x") as ex:
            closed_error(self, tr.connect, "inproc://x")
            closed_error(self, tr.learn, ex)
            closed_error(self, tr.sync)
            closed_error(self, tr.predict, ex)
            closed_error(self, tr.model)
            closed_error(self, pred.subscribe, "inproc://x", "inproc://y")
            closed_error(self, pred.predict, ex)
            closed_error(self, pred.predict_batch, [ex])
            closed_error(self, pred.wait_version, 1, 10)
            closed_error(self, pred.copy_model)
            closed_error(self, pred.stop)

    def test_close_while_other_threads_call(self):
        """close() waits for calls in progress; later calls raise."""
        m = ot.Model(bits=10)
        ex = ot.Example.parse("1 |a x")
        errors, counts = [], [0] * 4
        start = threading.Barrier(5)

        def work(k):
            start.wait()
            while True:
                try:
                    m.predict(ex)
                    counts[k] += 1
                except ot.OnlineTrainError as e:
                    if e.status != ot.OT_ECLOSED:
                        errors.append(e)
                    return

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        start.wait()
        for _ in range(100):  # exclusive calls between the shared ones
            m.learn(ex)
        deadline = time.monotonic() + 30
        while sum(counts) < 200 and time.monotonic() < deadline:
            time.sleep(0.001)
        m.close()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertGreaterEqual(sum(counts), 200)
        ex.close()


if __name__ == "__main__":
    unittest.main()
