"""Makes the package in the source tree importable from these tests.

`python3 -m unittest discover bindings/python/tests` puts this directory on
sys.path; the package lives one level up.  The library is found as the
package finds it (ONLINETRAIN_LIB, the tree's build/, an installed one).
"""
import os
import socket
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(HERE)
if PACKAGE_ROOT not in sys.path:
    sys.path.insert(0, PACKAGE_ROOT)

import onlinetrain  # noqa: E402,F401  (fails here, early, if the library is missing)

_counter = [0]


def unique(prefix):
    """A name no other test of this process uses (for inproc:// URLs)."""
    _counter[0] += 1
    return "%s-%d-%d" % (prefix, os.getpid(), _counter[0])


def free_port():
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def click(i, item=None):
    """Example text i of a made-up click stream: items with an even number get clicked."""
    if item is None:
        item = i % 10
    return "%d |user u%d |item i%d" % (1 if item % 2 == 0 else -1, i % 97, item)
