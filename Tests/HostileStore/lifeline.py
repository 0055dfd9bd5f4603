"""The lifeline of a test server (hostile_s3.py, proxy.py): it lives only as long as the test
process that started it, so that a test run killed half-way leaves no server behind."""
import os
import signal
import threading
import time


def hold(parent, limit=900):
    """Takes SIGTERM and SIGINT back (a test runner may start us with them blocked) and ends this
    process when `parent` is gone, or after `limit` seconds."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)

    def watch():
        start = time.time()
        while time.time() - start < limit:
            try:
                os.kill(parent, 0)
            except OSError:
                break
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
