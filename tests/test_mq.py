"""ipc.mq, the Python API: real queues, real child processes."""
from __future__ import annotations

import errno
import gc
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers.children import spawn_py, still_blocked, wait_line
from helpers.names import queue_exists

import ipc
from ipc import mq

ALL_BYTES = bytes(range(256))


# -- open, create, errors ---------------------------------------------------------

def test_create_then_open(name):
    with mq.open(name, 4, 100) as q:
        assert (q.name, q.maxmsg, q.msgsize, q.created) == (name, 4, 100, True)
        assert q.os_name == "/" + name
        assert queue_exists(name)
        other = mq.open(name)
        assert (other.maxmsg, other.msgsize, other.created) == (4, 100, False)
        q.send(b"hi")
        assert other.receive() == (b"hi", 0)
        other.close()
        assert "maxmsg=4 msgsize=100" in repr(q)
    assert not queue_exists(name)
    assert "closed" in repr(q)


def test_defaults_are_the_system_defaults(name):
    lim = mq.limits()
    with mq.open(name, msgsize=64) as q:
        assert q.maxmsg == lim["msg_default"]
    with mq.open(name, maxmsg=2) as q:
        assert q.msgsize == lim["msgsize_default"]


def test_mode_is_0600(name):
    # Without an mqueue mount the mode is seen through the descriptor.
    with mq.open(name, 1, 1) as q:
        assert q._mq.mode & 0o777 == 0o600


def test_exists_and_not_found(name):
    with pytest.raises(FileNotFoundError) as e:
        mq.open(name)
    assert e.value.errno == errno.ENOENT and isinstance(e.value, ipc.NotFoundError)
    with mq.open(name, 1, 1):
        with pytest.raises(FileExistsError) as e:
            mq.open(name, 1, 1)
        assert e.value.errno == errno.EEXIST and isinstance(e.value, ipc.IPCError)


@pytest.mark.parametrize(("bad", "code"), [("", errno.EINVAL), ("a/b", errno.EINVAL),
                                      ("x" * 256, errno.ENAMETOOLONG)])
def test_bad_names(bad, code):
    with pytest.raises(OSError) as e:
        mq.open(bad, 1, 1)
    assert e.value.errno == code


@pytest.mark.parametrize(("args", "exc"), [((0, 10), ValueError), ((10, 0), ValueError),
                                      ((-1, 10), ValueError), ((1.5, 10), TypeError),
                                      ((True, 10), TypeError), (("1", 10), TypeError)])
def test_bad_sizes_change_nothing(name, args, exc):
    with pytest.raises(exc):
        mq.open(name, *args)
    assert not queue_exists(name)


def _privileged() -> bool:
    return mq._os._has_cap_sys_resource()


@pytest.mark.parametrize("which", ["maxmsg", "msgsize"])
def test_over_the_system_limit_names_it(name, which):
    key = {"maxmsg": "msg_max", "msgsize": "msgsize_max"}[which]
    limit = mq.limits()[key]
    if limit is None:
        pytest.skip(f"{mq.SYSCTL_DIR}/{key} is not readable")
    over = limit + 1
    kwargs = {"maxmsg": 1, "msgsize": 1, which: over}
    if _privileged():
        # CAP_SYS_RESOURCE lifts the sysctl limit: the queue is really made.
        with mq.open(name, **kwargs) as q:
            assert getattr(q, which) == over
        return
    with pytest.raises(ipc.IPCError) as e:
        mq.open(name, **kwargs)
    assert e.value.errno == errno.EINVAL
    assert e.value.strerror == (f"{which} {over} exceeds the system limit {limit} "
                                f"({mq.SYSCTL_DIR}/{key})")
    assert not queue_exists(name)


def test_over_the_kernel_hard_limit(name):
    with pytest.raises(ipc.IPCError) as e:
        mq.open(name, mq.HARD_MSGMAX + 1, 1)
    assert e.value.errno == errno.EINVAL and "maxmsg 65537 exceeds the" in e.value.strerror
    assert not queue_exists(name)


# -- send and receive ----------------------------------------------------------------

def test_priorities_highest_first_fifo_within(name):
    with mq.open(name, 10, 16) as q:
        for data, prio in [(b"a", 0), (b"b", 5), (b"c", 1), (b"d", 5), (b"e", 0),
                           (b"f", mq.PRIORITY_MAX)]:
            q.send(data, priority=prio)
        assert q.current_messages == 6
        got = [q.receive() for _ in range(6)]
    assert got == [(b"f", mq.PRIORITY_MAX), (b"b", 5), (b"d", 5), (b"c", 1), (b"a", 0),
                   (b"e", 0)]


def test_binary_payloads(name):
    with mq.open(name, 10, 300) as q:
        payloads = [ALL_BYTES, b"", b"\0", b"\0\0x\0", bytes(reversed(ALL_BYTES)) + b"\xff" * 44]
        for p in payloads:
            q.send(p)
        q.send(bytearray(b"ba\0"))
        q.send(memoryview(b"mv\0"))
        assert [q.receive()[0] for _ in range(len(payloads) + 2)] == [*payloads, b"ba\x00", b"mv\x00"]


def test_bad_messages_and_priorities(name):
    with mq.open(name, 2, 8) as q:
        with pytest.raises(ValueError, match="message of 9 bytes exceeds the queue's msgsize 8"):
            q.send(b"123456789")
        with pytest.raises(TypeError, match="encode it"):
            q.send("text")
        with pytest.raises(ValueError, match="priority"):
            q.send(b"x", priority=mq.PRIORITY_MAX + 1)
        with pytest.raises(ValueError, match="priority"):
            q.send(b"x", priority=-1)
        with pytest.raises(ValueError, match="NaN"):
            q.receive(float("nan"))
        assert q.current_messages == 0
        q.send(b"12345678")  # exactly msgsize is fine
        assert q.receive() == (b"12345678", 0)


def test_timeouts_both_ways(name):
    with mq.open(name, 2, 8) as q:
        with pytest.raises(ipc.Timeout) as e:
            q.receive(0)
        assert e.value.errno == errno.ETIMEDOUT and isinstance(e.value, TimeoutError)
        t0 = time.monotonic()
        with pytest.raises(ipc.Timeout):
            q.receive(0.2)
        assert time.monotonic() - t0 >= 0.19
        q.send(b"1")
        q.send(b"2")                                    # now full
        with pytest.raises(ipc.Timeout):
            q.send(b"3", timeout=0)
        t0 = time.monotonic()
        with pytest.raises(ipc.Timeout):
            q.send(b"3", timeout=0.2)
        assert time.monotonic() - t0 >= 0.19
        assert [q.receive(0)[0], q.receive(0)[0]] == [b"1", b"2"]


@pytest.mark.parametrize("timeout", [None, -1, float("inf")])
def test_waits_forever_until_a_message_comes(name, timeout):
    with mq.open(name, 2, 8) as q:
        got = []
        t = threading.Thread(target=lambda: got.append(q.receive(timeout)))
        t.start()
        t.join(0.3)
        assert t.is_alive(), "receive returned from an empty queue"
        q.send(b"late", priority=3)
        t.join(10)
        assert got == [(b"late", 3)]


def test_a_full_queue_blocks_the_sender_until_there_is_room(name):
    with mq.open(name, 1, 8) as q:
        q.send(b"first")
        t = threading.Thread(target=q.send, args=(b"second",))
        t.start()
        t.join(0.3)
        assert t.is_alive(), "send returned although the queue was full"
        assert q.receive() == (b"first", 0)
        t.join(10)
        assert not t.is_alive()
        assert q.receive(0) == (b"second", 0)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="signals go to the main thread")
def test_a_signal_whose_handler_returns_does_not_end_the_wait(name):
    seen = []
    old = signal.signal(signal.SIGALRM, lambda *_: seen.append(1))
    try:
        with mq.open(name, 1, 8) as q:
            sender = threading.Timer(0.6, q.send, args=(b"after",))
            sender.start()
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            assert q.receive(10) == (b"after", 0)
            sender.join()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert seen == [1]


# -- iteration, objects ------------------------------------------------------------------

def test_iteration_drains_what_is_there(name):
    with mq.open(name, 5, 8) as q:
        for m in (b"1", b"2", b"3"):
            q.send(m)
        assert list(q) == [b"1", b"2", b"3"]
        assert list(q) == []


def test_messages_with_stop_and_timeout(name):
    with mq.open(name, 5, 8) as q:
        for m in (b"1", b"2", b"", b"3"):
            q.send(m)
        assert list(q.messages(stop=b"")) == [b"1", b"2"]
        assert list(q.messages(timeout=0.1)) == [b"3"]


def test_pickled_objects(name):
    obj = {"a": [1, 2.5, None], "b": ("x", b"\0y")}
    with mq.open(name, 2, 1024) as q:
        q.send_obj(obj, priority=2)
        assert q.receive_obj() == obj
        with pytest.raises(ValueError, match="exceeds the queue's msgsize"):
            q.send_obj(b"x" * 2000)


# -- closing, unlinking ---------------------------------------------------------------------

def test_only_the_creator_unlinks(name):
    q = mq.open(name, 1, 8)
    other = mq.open(name)
    other.close()
    assert queue_exists(name)
    keeper = mq.open(name)
    q.close()
    assert not queue_exists(name)
    keeper.send(b"still")                 # open handles outlive the name
    assert keeper.receive() == (b"still", 0)
    keeper.close()


def test_collecting_the_creator_unlinks(name):
    q = mq.open(name, 1, 8)
    del q
    gc.collect()
    assert not queue_exists(name)


def test_unlink_explicitly(name):
    q = mq.open(name, 1, 8)
    q.unlink()
    assert not queue_exists(name)
    again = mq.open(name, 1, 8)          # a new queue of the same name...
    q.close()                            # ...survives the old creator's close
    assert queue_exists(name)
    again.close()
    with pytest.raises(FileNotFoundError):
        mq.unlink(name)


# -- across processes -----------------------------------------------------------------------

ECHO = """
import sys
from ipc import mq
inq, outq = mq.open(sys.argv[1]), mq.open(sys.argv[2])
print("ready", flush=True)
for data in inq.messages(stop=b"STOP"):
    outq.send(data, priority=len(data) % 7)
print("done", flush=True)
"""


def test_send_and_receive_across_processes(make_name):
    a, b = make_name(), make_name()
    with mq.open(a, 10, 300) as qa, mq.open(b, 10, 300) as qb:
        p = spawn_py(ECHO, a, b)
        wait_line(p)
        payloads = [ALL_BYTES, b"", b"\0\1\2", b"x" * 300] * 5
        for data in payloads:
            qa.send(data)
            assert qb.receive(10) == (data, len(data) % 7)
        qa.send(b"STOP")
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        assert out.strip() == "done"


BLOCKED = """
import sys
from ipc import mq
q = mq.open(sys.argv[1])
print("ready", flush=True)
try:
    if sys.argv[2] == "receive":
        q.receive()
    else:
        q.send(b"one too many")
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    raise
"""


@pytest.mark.parametrize("verb", ["receive", "send"])
def test_ctrl_c_ends_a_blocked_call(name, verb):
    with mq.open(name, 1, 16) as q:
        if verb == "send":
            q.send(b"full")
        p = spawn_py(BLOCKED, name, verb)
        wait_line(p)
        assert still_blocked(p), "the child did not block"
        p.send_signal(signal.SIGINT)
        out, _ = p.communicate(timeout=15)
        assert "KeyboardInterrupt" in out
        assert p.returncode != 0
        assert q.current_messages == (1 if verb == "send" else 0)


RLIMITED = """
import resource, sys
from ipc import mq
resource.setrlimit(resource.RLIMIT_MSGQUEUE, (1000, resource.getrlimit(resource.RLIMIT_MSGQUEUE)[1]))
try:
    mq.open(sys.argv[1], 10, 1000)
except OSError as e:
    print(e.errno, e.strerror)
"""


def test_over_the_queue_memory_rlimit_names_it(name):
    out = subprocess.run([sys.executable, "-c", RLIMITED, name], capture_output=True,
                         text=True, timeout=30, check=False)
    assert out.stdout.strip() == (
        f"{errno.EMFILE} cannot create a queue of 10 x 1000 bytes: over the per-user queue "
        "memory limit RLIMIT_MSGQUEUE (1000 bytes, ulimit -q) or the open-files limit"), out.stderr
    assert not queue_exists(name)
