"""An in-process cluster driven from Python: a server, two trainers and a
predictor over inproc://, plus metrics scraped over HTTP."""
import threading
import unittest
import urllib.error
import urllib.request

import _support
import onlinetrain as ot


def options():
    # FTRL trainers exchange their state; every changed weight reaches the
    # predictor (rt_threshold 0), so it serves exactly the master.
    return dict(bits=16, delta_source="state", sync_every_examples=250, sync_interval_ms=0,
                rt_interval_ms=20, full_interval_ms=2000, rt_threshold=0.0)


class ClusterTest(unittest.TestCase):
    def test_two_trainers_and_a_predictor(self):
        name = _support.unique("py-cluster")
        turl, purl = "inproc://%s-t" % name, "inproc://%s-p" % name
        cfg = ot.Config(**options())
        ps = ot.ParamServer(cfg)
        ps.listen(turl, purl)
        ps.start()
        self.assertEqual(ps.trainer_url, turl)
        self.assertEqual(ps.predictor_url, purl)
        trainers = []
        for tid in (1, 2):
            tr = ot.Trainer(cfg, trainer_id=tid)
            tr.connect(turl)
            trainers.append(tr)
        pred = ot.Predictor(cfg)
        pred.subscribe(purl, turl)
        self.assertEqual(pred.version, 0)

        # Each trainer learns its half of the stream on its own thread.
        failures = []

        def train(tr, first):
            try:
                exs = ot.parse_examples([_support.click(i, (i // 2) % 10)
                                         for i in range(first, 6000, 2)])
                for ex in exs:
                    tr.learn(ex)
                tr.sync()
                for ex in exs:
                    ex.close()
            except Exception as e:  # reported by the main thread
                failures.append(e)

        threads = [threading.Thread(target=train, args=(tr, k)) for k, tr in enumerate(trainers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(failures, [])
        # A last sync each, so both hold everything the other sent.
        for tr in trainers:
            tr.sync()

        master = ps.version
        self.assertGreaterEqual(master, 6000 // 250)
        self.assertTrue(pred.wait_version(master, 20000), "predictor stuck at %d of %d"
                        % (pred.version, master))
        self.assertFalse(pred.wait_version(master + 1000, 50))  # a timeout is False

        with ot.Example.parse("|user u3 |item i4") as even, \
                ot.Example.parse("|user u3 |item i7") as odd, ps.copy_model() as m:
            self.assertGreater(pred.predict(even), 0.9)
            self.assertLess(pred.predict(odd), 0.1)
            # The predictor serves the master: same predictions.
            self.assertAlmostEqual(pred.predict(even), m.predict(even), places=5)
            self.assertAlmostEqual(pred.predict(odd), m.predict(odd), places=5)
            batch = pred.predict_batch([even, odd], as_numpy=False)
            self.assertEqual(batch, [pred.predict(even), pred.predict(odd)])
            # The trainers hold the master too, after their last syncs.
            for tr in trainers:
                self.assertAlmostEqual(tr.predict(even), m.predict(even), places=4)
                with tr.model() as local:
                    self.assertEqual(local.fingerprint, m.fingerprint)
            with pred.copy_model() as served:
                self.assertAlmostEqual(served.predict(even), m.predict(even), places=5)

        # Stats.
        stats = ps.stats()
        self.assertEqual(stats["version"], master)
        self.assertEqual(stats["deltas_in"], master)
        self.assertEqual(ps.stat("deltas_in"), master)
        self.assertEqual(sum(tr.stat("examples") for tr in trainers), 6000)
        self.assertEqual(pred.stats()["predictions"], pred.stat("predictions"))
        with self.assertRaises(ot.OnlineTrainError) as cm:
            ps.stat("no_such_stat")
        self.assertEqual(cm.exception.status, ot.OT_ENOENT)

        # Metrics over HTTP, from each role, on one port.
        for attempt in range(20):  # another program may take the free port first
            port = _support.free_port()
            try:
                ps.serve_metrics("http://127.0.0.1:%d/ps" % port)
                break
            except ot.OnlineTrainError as e:
                if e.status != ot.OT_EADDRINUSE or attempt == 19:
                    raise
        trainers[0].serve_metrics("http://127.0.0.1:%d/t1" % port)
        pred.serve_metrics("http://127.0.0.1:%d/pred" % port)
        with self.assertRaises(ot.OnlineTrainError) as cm:
            pred.serve_metrics("http://127.0.0.1:%d/again" % port)
        self.assertEqual(cm.exception.status, ot.OT_ESTATE)
        text = urllib.request.urlopen("http://127.0.0.1:%d/ps" % port, timeout=10).read()
        lines = text.decode().splitlines()
        self.assertIn("# TYPE ot_param_server_deltas_in counter", lines)
        self.assertIn("ot_param_server_deltas_in %d" % master, lines)
        text = urllib.request.urlopen("http://127.0.0.1:%d/t1" % port, timeout=10).read()
        self.assertIn("ot_trainer_examples %d" % trainers[0].stat("examples"),
                      text.decode().splitlines())
        text = urllib.request.urlopen("http://127.0.0.1:%d/pred" % port, timeout=10).read()
        self.assertIn("# TYPE ot_predictor_version gauge", text.decode().splitlines())

        # Stopping and closing, in any order.
        pred.stop()
        with ot.Example.parse("|user u3 |item i4") as even:
            self.assertGreater(pred.predict(even), 0.9)  # the last model is still served
        ps.stop()
        with self.assertRaises(ot.OnlineTrainError) as cm:
            ps.start()
        self.assertEqual(cm.exception.status, ot.OT_ESTATE)
        self.assertTrue(cm.exception.errmsg)
        ps.close()
        for tr in trainers:
            tr.close()
        pred.close()
        with self.assertRaises(urllib.error.URLError):
            urllib.request.urlopen("http://127.0.0.1:%d/ps" % port, timeout=10)
        cfg.close()

    def test_role_errors(self):
        with ot.Trainer(bits=8, timeout_ms=200) as tr:
            with self.assertRaises(ot.OnlineTrainError) as cm:
                tr.connect("inproc://%s-nobody" % _support.unique("py"))
            self.assertEqual(cm.exception.status, ot.OT_ETIMEDOUT)
            self.assertTrue(cm.exception.errmsg)
        with ot.ParamServer(bits=8) as ps:
            with self.assertRaises(ot.OnlineTrainError) as cm:
                ps.start()  # not bound
            self.assertEqual(cm.exception.status, ot.OT_ESTATE)
            with self.assertRaises(ot.OnlineTrainError) as cm:
                ps.listen("nonsense://x")
            self.assertIn(cm.exception.status, (ot.OT_EINVAL, ot.OT_ENOTSUP))
            with self.assertRaises(ot.OnlineTrainError) as cm:
                ps.serve_metrics("https://127.0.0.1:1/")
            self.assertEqual(cm.exception.status, ot.OT_ENOTSUP)
        with self.assertRaises(ot.OnlineTrainError) as cm:
            ot.ParamServer(rt_interval_ms=100, full_interval_ms=200)  # fails validation
        self.assertEqual(cm.exception.status, ot.OT_EINVAL)
        with ot.Predictor(bits=8) as pred, ot.Example.parse("|a x") as ex:
            with self.assertRaises(ot.OnlineTrainError) as cm:
                pred.predict(ex)  # no model yet
            self.assertEqual(cm.exception.status, ot.OT_ESTATE)


if __name__ == "__main__":
    unittest.main()
