"""(f) Writes binary garbage to stdout, both through ``sys.stdout`` and straight to fd 1
with ``os.write``, at import and then repeatedly from a thread; also long runs without a
newline and invalid UTF-8.

Output is not the protocol (that has its own socket), so this is harmless: the location stays
`ready` and is never restarted; the garbage goes to its log and, made printable and cut to a
bounded line length, to `wsm up`'s output.
"""

import os
import random
import sys
import threading
import time

from workspace_manager import RunRequest, job, repository, sensor

_rng = random.Random(1234)


def _garbage(n):
    return bytes(_rng.getrandbits(8) for _ in range(n))


def _spew_once():
    sys.stdout.buffer.write(_garbage(512) + b"\n")
    sys.stdout.flush()
    os.write(1, b"\x00\xff\xfe\x1b[2J\x1b]0;pwned\x07" + _garbage(1024))
    os.write(1, b"\xc3\x28 invalid utf-8 \xe2\x82\n")
    os.write(2, _garbage(256) + b"\n")


def _spew():
    n = 0
    while True:
        _spew_once()
        n += 1
        if n % 10 == 0:
            os.write(1, b"\x01" * 20000)  # one "line" longer than the manager keeps
        time.sleep(0.1)


_spew_once()
threading.Thread(target=_spew, daemon=True).start()


@job
def noisy(): ...


@sensor(job=noisy)
def noisy_sensor():
    _spew_once()
    yield RunRequest(run_key=None)


@repository
def garbage():
    return [noisy, noisy_sensor]
