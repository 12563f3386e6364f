"""Start and stop `waterline serve` processes for the real-client tests.

Every broker listens on 127.0.0.1 port 0 (the kernel picks a free port) and the harness reads the
bound address from the broker's ready line, so tests never collide on ports. Brokers are always
stopped (SIGTERM, then SIGKILL) when the test ends.
"""

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

READY = re.compile(r"^waterline: ready on (\S+) ")
LISTENER = re.compile(r"^waterline: listener (\w+)://(\S+)$")


def waterline_bin() -> str:
    path = os.environ.get("WATERLINE_BIN")
    if path:
        return path
    root = Path(__file__).resolve().parents[2]
    return str(root / "target" / "debug" / "waterline")


class Broker:
    """One `waterline serve` process on a data dir that outlives restarts."""

    def __init__(self, data_dir, extra_args=(), extra_env=None):
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.extra_env = dict(extra_env or {})
        # Protocol -> bound address of each listener, from the lines before the ready line.
        self.listeners = {}
        self.listen = "127.0.0.1:0"
        self.proc = None
        self.bootstrap = None
        self.stderr_lines = []

    def start(self, timeout=30.0):
        assert self.proc is None, "broker already running"
        args = [
            waterline_bin(),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.listen,
            *self.extra_args,
        ]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.update(self.extra_env)
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        # Drain stderr continuously so the broker never blocks on a full pipe.
        lines = self.stderr_lines
        proc = self.proc
        threading.Thread(
            target=lambda: [lines.append(line) for line in proc.stderr], daemon=True
        ).start()
        deadline = time.monotonic() + timeout
        ready = {}

        listeners = self.listeners
        listeners.clear()

        def read_ready():
            for line in proc.stdout:
                lm = LISTENER.match(line.strip())
                if lm:
                    listeners[lm.group(1)] = lm.group(2)
                m = READY.match(line)
                if m:
                    ready["addr"] = m.group(1)
                    return

        reader = threading.Thread(target=read_ready, daemon=True)
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        if "addr" not in ready:
            self.kill()
            raise RuntimeError(
                "broker did not become ready; stderr:\n" + "".join(self.stderr_lines[-50:])
            )
        self.bootstrap = ready["addr"]
        return self.bootstrap

    def pin_port(self):
        """Later starts listen on the port this run got, so clients that keep running across a
        restart find the broker where it was (the kernel's choice is kept; tokio binds with
        SO_REUSEADDR, so connections left in TIME_WAIT do not block the rebind)."""
        assert self.bootstrap is not None, "start the broker first"
        self.listen = self.bootstrap

    def kill(self):
        """SIGKILL: no flush, no clean shutdown marker."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc = None

    def stop(self, timeout=30.0):
        """SIGTERM and wait for a clean exit; returns the exit code."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise
        self.proc = None
        return code

    def stderr_text(self):
        return "".join(self.stderr_lines)


# Short group delays and timeouts keep group tests fast; the broker's limits must admit them.
FAST_GROUPS_CONFIG = """
[groups]
initial_rebalance_delay_ms = 100
min_session_timeout_ms = 1000
"""


@contextlib.contextmanager
def running_broker(root, fast_groups=False, config=""):
    """A broker on `root/data`, started now and stopped cleanly on exit (exit code 0 asserted).

    With `fast_groups`, its consumer groups use a 100 ms initial rebalance delay and admit
    1-second session timeouts. `config` is more top-level TOML settings. Both go into a config
    file in `root`.
    """
    root = Path(root)
    extra = []
    if fast_groups or config:
        cfg = root / "waterline.toml"
        cfg.write_text(config + "\n" + (FAST_GROUPS_CONFIG if fast_groups else ""))
        extra = ["--config", str(cfg)]
    b = Broker(root / "data", extra_args=extra)
    b.start()
    try:
        yield b
    finally:
        if b.proc is not None:
            code = b.stop()
            assert code == 0, "broker did not shut down cleanly:\n" + b.stderr_text()[-4000:]
