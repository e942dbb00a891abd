"""sd_notify against a real Unix datagram socket standing in for systemd.

systemd is not PID 1 here, so each test binds the socket systemd would own,
points $NOTIFY_SOCKET at it, and reads what djsmile sends: READY=1 after
start-up, WATCHDOG=1 at half of $WATCHDOG_USEC while frames flow, and no
WATCHDOG=1 once the frame loop stalls (that silence is what makes systemd
restart a hung service).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
import uuid

import pytest

from djsmile.notify import Notifier
from helpers import FakeModel, FixedFinder


class FakeSystemd:
    """A bound AF_UNIX datagram socket that records (monotonic time, message) pairs."""

    def __init__(self, abstract: bool = False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract:
            name = f"djsmile-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
            self._dir = None
        else:
            # A short folder: AF_UNIX paths are limited to 107 bytes.
            self._dir = tempfile.mkdtemp(prefix="djsn-")
            self.address = os.path.join(self._dir, "notify")
            self.sock.bind(self.address)
        self.messages: list[tuple[float, str]] = []
        self._stop = False
        self._thread: threading.Thread | None = None

    # synchronous reading (unit tests)
    def recv_all(self, timeout: float = 0.2) -> list[str]:
        out = []
        self.sock.settimeout(timeout)
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except socket.timeout:
                return out
            self.sock.settimeout(0.02)

    # background reading with arrival times (end-to-end tests)
    def start(self) -> "FakeSystemd":
        self.sock.settimeout(0.05)

        def loop():
            while not self._stop:
                try:
                    data = self.sock.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                for line in data.decode().splitlines():
                    self.messages.append((time.monotonic(), line))

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop = True
        if self._thread:
            self._thread.join(2)
        self.sock.close()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    def env(self, watchdog_usec: int | None = None, watchdog_pid: int | None = None) -> dict:
        env = {"NOTIFY_SOCKET": self.address}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        if watchdog_pid is not None:
            env["WATCHDOG_PID"] = str(watchdog_pid)
        return env


@pytest.fixture
def systemd():
    s = FakeSystemd()
    yield s
    s.close()


def test_outside_systemd_every_call_is_a_silent_noop():
    n = Notifier.from_env({})
    assert not n.enabled and n.watchdog_interval is None
    assert n.ready() is False
    assert n.status("12 fps") is False
    assert n.watchdog() is False
    assert n.stopping() is False
    # and the real environment of a test run (no systemd) gives the same
    saved = os.environ.pop("NOTIFY_SOCKET", None)
    try:
        assert not Notifier.from_env().enabled
    finally:
        if saved is not None:
            os.environ["NOTIFY_SOCKET"] = saved


def test_ready_status_stopping_reach_the_socket(systemd):
    n = Notifier.from_env(systemd.env())
    assert n.enabled
    assert n.ready() is True
    assert n.status("12.5 fps, 1 face\nlast smile 10:42:07") is True
    assert n.stopping() is True
    assert systemd.recv_all() == ["READY=1", "STATUS=12.5 fps, 1 face last smile 10:42:07", "STOPPING=1"]


def test_abstract_namespace_socket():
    s = FakeSystemd(abstract=True)
    try:
        assert s.address.startswith("@")
        n = Notifier.from_env(s.env())
        assert n.ready()
        assert s.recv_all() == ["READY=1"]
    finally:
        s.close()


def test_watchdog_pings_at_half_the_timeout_while_frames_flow(systemd):
    n = Notifier.from_env(systemd.env(watchdog_usec=10_000_000))  # WatchdogSec=10
    assert n.watchdog_s == 10.0 and n.watchdog_interval == 5.0
    sent_at = []
    for i in range(301):  # 30 s of frames at 10 fps
        now = 100.0 + i / 10
        if n.watchdog(now):
            sent_at.append(round(now - 100.0, 6))
    assert sent_at == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    assert systemd.recv_all() == ["WATCHDOG=1"] * 7


def test_watchdog_silent_once_frames_stop(systemd):
    n = Notifier.from_env(systemd.env(watchdog_usec=2_000_000))
    for i in range(30):  # frames flow for 3 s
        n.watchdog(i / 10)
    assert systemd.recv_all() == ["WATCHDOG=1"] * 3  # at 0, 1, 2 s
    # the loop stalls: nothing calls watchdog(), so nothing reaches systemd
    assert systemd.recv_all(timeout=0.3) == []
    # slow frames (one every 0.4 s) still ping only once a second
    for t in (3.0, 3.4, 3.8, 4.2):
        n.watchdog(t)
    assert systemd.recv_all() == ["WATCHDOG=1", "WATCHDOG=1"]  # at 3.0 and 4.2


def test_no_watchdog_without_watchdog_usec(systemd):
    n = Notifier.from_env(systemd.env())
    assert n.watchdog_s is None
    assert not any(n.watchdog(t) for t in range(100))
    assert systemd.recv_all() == []


def test_watchdog_meant_for_another_pid_is_ignored(systemd):
    other = Notifier.from_env(systemd.env(watchdog_usec=1_000_000, watchdog_pid=os.getpid() + 1))
    assert other.watchdog(0.0) is False
    ours = Notifier.from_env(systemd.env(watchdog_usec=1_000_000, watchdog_pid=os.getpid()))
    assert ours.watchdog(0.0) is True
    assert systemd.recv_all() == ["WATCHDOG=1"]


@pytest.mark.parametrize("usec", ["0", "-5", "soon"])
def test_bad_watchdog_usec_turns_the_watchdog_off(systemd, usec):
    n = Notifier.from_env({"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": usec})
    assert n.watchdog_s is None and n.watchdog(0.0) is False
    assert n.ready()  # the socket itself still works


def test_unreachable_socket_never_raises_and_the_ping_is_retried(caplog):
    d = tempfile.mkdtemp(prefix="djsn-")
    try:
        path = os.path.join(d, "notify")
        n = Notifier.from_env({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
        assert n.ready() is False          # nobody listening: reported, not raised
        assert n.watchdog(0.0) is False
        assert "cannot notify systemd" in caplog.text
        # systemd comes back: the very next frame pings (the failed one was not counted)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        try:
            assert n.watchdog(0.1) is True
            sock.settimeout(1)
            assert sock.recv(100) == b"WATCHDOG=1"
            assert n.watchdog(0.2) is False  # and then again only after 1 s
        finally:
            sock.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_relative_notify_socket_is_refused(caplog):
    n = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234", "WATCHDOG_USEC": "1000000"})
    assert not n.enabled and n.ready() is False and n.watchdog(0.0) is False
    assert "not a Unix socket path" in caplog.text


# --------------------------------------------------------------------------------------------
# end to end: the frame loop (djsmile.service) drives the notifier

WATCHDOG_USEC = 800_000        # WatchdogSec=0.8 s -> a ping every 0.4 s
PING_S = WATCHDOG_USEC / 2e6
FLOW_S, STALL_S, RESUME_S = 1.6, 1.2, 0.5   # the stall outlasts the watchdog timeout


class StallingSource:
    """A camera that delivers frames, hangs for a while, then delivers again.

    Around the hang it sends ``X-TEST=stall`` / ``X-TEST=resume`` to the notify
    socket, so the test sees, in order, which pings came before, during and after.
    The generator only resumes after the loop has handled the previous frame,
    so every ping for the frames before the stall is already on the socket.
    """

    name = "stalling test camera"
    finite = True

    def __init__(self, notify_address: str, fps: float = 30.0):
        self.addr = ("\0" + notify_address[1:]) if notify_address.startswith("@") else notify_address
        self.fps = fps

    def _frames(self, start: int, seconds: float):
        import numpy as np

        from djsmile.sources import Frame

        gray = np.zeros((120, 160), np.uint8)
        end = time.monotonic() + seconds
        i = start
        while time.monotonic() < end:
            yield Frame(gray=gray, index=i, t=i / self.fps)
            i += 1
            time.sleep(1 / self.fps)

    def __iter__(self):
        marker = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            n = 0
            for frame in self._frames(0, FLOW_S):
                n = frame.index + 1
                yield frame
            marker.sendto(b"X-TEST=stall", self.addr)
            time.sleep(STALL_S)
            marker.sendto(b"X-TEST=resume", self.addr)
            yield from self._frames(n, RESUME_S)
        finally:
            marker.close()

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _check_watchdog_rhythm(messages: list[tuple[float, str]]) -> None:
    """Pings at ~half the timeout while frames flow, none during the stall, again after it."""
    msgs = [m for _, m in messages]
    stall, resume = msgs.index("X-TEST=stall"), msgs.index("X-TEST=resume")
    before = [t for t, m in messages[:stall] if m == "WATCHDOG=1"]
    during = [m for m in msgs[stall:resume] if m == "WATCHDOG=1"]
    after = [t for t, m in messages[resume:] if m == "WATCHDOG=1"]
    # while frames flow: about FLOW_S / PING_S pings, never more than the rate limit allows
    assert 2 <= len(before) <= int(FLOW_S / PING_S) + 2, before
    gaps = sorted(b - a for a, b in zip(before, before[1:]))
    median = gaps[len(gaps) // 2]
    assert PING_S * 0.75 <= median <= PING_S * 2.0, gaps
    # the loop is stuck longer than systemd's timeout, and says nothing: systemd would restart it
    assert messages[resume][0] - messages[stall][0] >= WATCHDOG_USEC / 1e6
    assert during == []
    # frames flow again: the very next frame pings
    assert after and after[0] - messages[resume][0] < PING_S, (after, messages[resume])


@pytest.mark.slow
def test_frame_loop_pings_while_frames_flow_and_goes_silent_when_they_stall(systemd):
    from djsmile import service
    from djsmile.config import Config

    systemd.start()
    notifier = Notifier.from_env(systemd.env(watchdog_usec=WATCHDOG_USEC, watchdog_pid=os.getpid()))
    cfg = Config()
    rc = {}
    t = threading.Thread(target=lambda: rc.setdefault("rc", service.run(
        cfg, StallingSource(systemd.address),
        service.LoopParts(model=FakeModel(), finder=FixedFinder(boxes=()), sinks=[notifier]))))
    t.start()
    t.join(30)
    assert not t.is_alive(), "the frame loop did not end"
    time.sleep(0.1)
    assert rc["rc"] == 0
    _check_watchdog_rhythm(systemd.messages)
    statuses = [m for _, m in systemd.messages if m.startswith("STATUS=")]
    assert statuses and "fps" in statuses[0]


RUN_WRAPPER = r"""
import os, sys
sys.path.insert(0, {tests!r})
os.environ["WATCHDOG_PID"] = str(os.getpid())   # as systemd sets it for the main process
from djsmile import cli, service
from helpers import FakeModel
from test_notify import StallingSource

service.open_source = lambda spec, cfg, **kw: StallingSource(os.environ["NOTIFY_SOCKET"])
service.SmileModel.from_config = classmethod(lambda cls, mc: FakeModel())
sys.exit(cli.main(["run", "--no-gpio", "--no-jokes", "--state-dir", {state!r}, "--log-level", "INFO"]))
"""


@pytest.mark.slow
def test_djsmile_run_sends_ready_then_watchdog_and_stops_pinging_when_the_camera_hangs(systemd, tmp_path):
    """`djsmile run` as systemd starts it: READY=1 first, the watchdog rhythm, STOPPING=1 last.

    The camera and the model are replaced in the child process (a camera that
    hangs cannot be made from a file); everything else is the real command.
    """
    import subprocess
    import sys
    from pathlib import Path

    systemd.start()
    script = tmp_path / "run_djsmile.py"
    script.write_text(RUN_WRAPPER.format(tests=str(Path(__file__).parent), state=str(tmp_path / "state")))
    env = dict(os.environ, **systemd.env(watchdog_usec=WATCHDOG_USEC))
    p = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    time.sleep(0.1)
    assert p.returncode == 0, p.stderr
    msgs = [m for _, m in systemd.messages]
    assert msgs and msgs[0] == "READY=1", msgs          # nothing before start-up is done
    assert msgs[-1] == "STOPPING=1", msgs
    assert any(m.startswith("STATUS=") for m in msgs)
    _check_watchdog_rhythm(systemd.messages)
