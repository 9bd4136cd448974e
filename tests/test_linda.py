"""ipc.linda from Python: real processes, real kills, real threads.

The Lua faces and the value mapping between Lua and Python are in
test_linda_lua.py; the codec's own round trips in test_linda_wire.py.
"""
from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.children import (
    LUAIPC,
    child_env,
    finish,
    interrupt,
    run_py,
    still_blocked,
    wait_line,
)
from helpers.lua import TWO_ENGINES
from helpers.names import SHM_DIR

import ipc
from ipc import linda

pytestmark = pytest.mark.timeout(120)


def _file(name: str) -> Path:
    return SHM_DIR / f"linda.{name}"


@pytest.fixture
def made(name):
    with linda.create(name) as ld:
        yield ld


# -- the verbs ------------------------------------------------------------------

def test_fifo_per_key_and_values_round_trip(made):
    values = [None, True, False, 0, -1, 2**63 - 1, -2**63, 0.5, float("inf"), "text",
              "ünï", b"\xff\x00", [1, "two", [3.0]], {"x": 3.5, "y": [None, 1]}, {}]
    made.send("k", *values)
    assert made.count("k") == len(values)
    got = [made.receive("k", timeout=0)[1] for _ in values]
    assert got == values
    assert made.count("k") == 0


def test_receive_takes_from_the_first_listed_key_that_has_a_value(made):
    made.send("low", "l1")
    made.send("high", "h1")
    assert made.receive("high", "low") == ("high", "h1")
    assert made.receive("high", "low") == ("low", "l1")
    with pytest.raises(ipc.Timeout):
        made.receive("high", "low", timeout=0)


def test_send_is_atomic_for_several_values(made):
    made.limit("k", 3)
    made.send("k", 1, 2)
    with pytest.raises(ipc.Timeout):
        made.send("k", 3, 4, timeout=0)      # two would exceed the limit: none go
    assert made.count("k") == 2
    made.send("k", 3, timeout=0)


def test_receive_timeout_waits_about_that_long(made):
    t0 = time.monotonic()
    with pytest.raises(ipc.Timeout) as info:
        made.receive("nothing", timeout=0.3)
    assert 0.28 <= time.monotonic() - t0 < 5
    assert info.value.errno == errno.ETIMEDOUT


def test_limit_blocks_the_sender_until_another_process_receives(made):
    made.limit("k", 1)
    made.send("k", "first")
    p = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, ipc.linda as L\n"
        "l = L.open(sys.argv[1]); print('ready', flush=True)\n"
        "time.sleep(0.3); print(l.receive('k', timeout=10)[1], flush=True)\n"), made.name],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_line(p)
    t0 = time.monotonic()
    made.send("k", "second", timeout=10)     # waits for the child's receive
    assert time.monotonic() - t0 >= 0.2
    rc, out, err = finish(p)
    assert (rc, out.strip()) == (0, "first"), err
    assert made.receive("k", timeout=0) == ("k", "second")


def test_limit_query_and_unlimited(made):
    assert made.limit("k") is None
    assert made.limit("k", 2) == 2
    assert made.limit("k") == 2
    made.send("k", 1, 2)
    with pytest.raises(ipc.Timeout):
        made.send("k", 3, timeout=0)
    made.limit("k", None)
    made.send("k", 3, timeout=0)
    assert made.count("k") == 3


def test_limit_zero_blocks_every_send(made):
    made.limit("k", 0)
    with pytest.raises(ipc.Timeout):
        made.send("k", 1, timeout=0.05)


def test_set_and_get_do_not_consume(made):
    made.set("cfg", {"depth": 2}, "b")
    assert made.get("cfg") == {"depth": 2}
    assert made.get("cfg", 5) == [{"depth": 2}, "b"]
    assert made.count("cfg") == 2
    made.send("cfg", "c")                      # set and send share the FIFO (Lanes)
    made.set("cfg", "only")                    # set replaces it all
    assert made.get("cfg", 5) == ["only"]
    made.set("cfg")                            # no values: cleared
    assert made.get("cfg") is None
    assert made.count("cfg") == 0
    made.set("never")                          # clearing a missing key creates nothing
    assert "never" not in made.count()


def test_set_wakes_a_blocked_receiver(made):
    got = []
    t = threading.Thread(target=lambda: got.append(made.receive("k", timeout=10)))
    t.start()
    time.sleep(0.2)
    made.set("k", 42)
    t.join(10)
    assert got == [("k", 42)]


def test_count_shapes(made):
    assert made.count() == {}
    made.send("a", 1, 2)
    made.send(7, "x")
    assert made.count("a") == 2
    assert made.count("zzz") == 0
    assert made.count() == {"a": 2, 7: 1}
    assert made.count("a", "zzz") == {"a": 2}


def test_keys_str_and_bytes_are_one_key_and_integral_floats_are_ints(made):
    made.send(b"k", 1)
    assert made.receive("k", timeout=0) == ("k", 1)
    made.send(3.0, "x")
    assert made.receive(3, timeout=0) == (3, "x")
    with pytest.raises(TypeError):
        made.send([1], 1)
    with pytest.raises(TypeError):
        made.send(None, 1)


def test_receive_batched(made):
    made.send("k", 1, 2, 3, 4, 5)
    assert made.receive_batched("k", 2, 3, timeout=0) == [1, 2, 3]
    with pytest.raises(ipc.Timeout):
        made.receive_batched("k", 3, timeout=0)
    assert made.receive_batched("k", 2, timeout=0) == [4, 5]
    with pytest.raises(ValueError):
        made.receive_batched("k", 3, 2)


def test_strings_from_invalid_utf8_arrive_as_bytes_and_raw_gives_bytes(made, name):
    made.send("k", b"\xff", "ok")
    assert made.receive("k")[1] == b"\xff"
    assert made.receive("k")[1] == "ok"
    with linda.open(name, raw=True) as r:
        made.send("k", "ok")
        assert r.receive("k", timeout=0)[1] == b"ok"


# -- names, lifetimes ----------------------------------------------------------------

def test_creator_close_removes_the_name_others_keep_working(name):
    a = linda.create(name)
    b = linda.open(name)
    assert _file(name).exists()
    b.close()
    assert _file(name).exists()               # an opener's close leaves it
    c = linda.open(name)
    a.close()
    assert not _file(name).exists()           # the creator's close removes it
    c.send("k", 1)                            # still usable by who has it
    assert c.receive("k", timeout=0) == ("k", 1)
    c.close()
    with pytest.raises(FileNotFoundError):
        linda.open(name)


def test_create_twice_and_open_missing(name):
    with linda.create(name):
        with pytest.raises(FileExistsError):
            linda.create(name)
        with linda.linda(name) as again:       # open-or-create opens it
            assert not again.created
    with pytest.raises(FileNotFoundError):
        linda.open(name)
    with linda.linda(name) as ld:               # ... or creates it
        assert ld.created and ld.owner
    assert not _file(name).exists()


def test_anonymous_lindas_have_unique_names_others_can_open():
    with linda.create() as a, linda.create() as b:
        assert a.name != b.name
        r = run_py(f"import ipc.linda as L\nL.open({a.name!r}).send('k', 'hi')")
        assert r.returncode == 0, r.stderr
        assert a.receive("k", timeout=0) == ("k", "hi")
    assert not _file(a.name).exists() and not _file(b.name).exists()


@pytest.mark.parametrize("bad", ["", "a/b", "/x", "a\0b", ".", "..", "x" * 250])
def test_bad_names_are_refused_and_make_nothing(bad):
    before = set(os.listdir(SHM_DIR))
    with pytest.raises(ipc.IPCError) as info:
        linda.create(bad)
    assert info.value.errno in (errno.EINVAL, errno.ENAMETOOLONG)
    assert set(os.listdir(SHM_DIR)) == before


def test_bad_arguments_are_clear_errors(made):
    with pytest.raises(ValueError, match="at least one value"):
        made.send("k")
    with pytest.raises(ValueError, match="at least one key"):
        made.receive()
    with pytest.raises(TypeError):
        made.send("k", 1, timeout="soon")
    with pytest.raises(ValueError):
        made.receive("k", timeout=float("nan"))
    with pytest.raises(ValueError):
        made.limit("k", -1)
    with pytest.raises(TypeError):
        made.send("k", object())
    assert made.count() == {}                  # nothing half-made


def test_capacity_is_a_clean_error_that_changes_nothing(name):
    with linda.create(name, capacity=8192) as ld:
        ld.send("k", "small")
        with pytest.raises(ipc.IPCError) as info:
            ld.send("k", "x" * 10_000)
        assert info.value.errno == errno.ENOSPC
        assert "capacity" in str(info.value)
        assert ld.count("k") == 1
        assert ld.receive("k", timeout=0) == ("k", "small")
    with pytest.raises(ValueError):
        linda.create(name, capacity=100)
    with pytest.raises(ValueError):
        linda.Linda(name, create=False, capacity=1 << 20)


def test_closed_handle(made):
    made.close()
    made.close()
    with pytest.raises(ValueError, match="closed"):
        made.send("k", 1)


def test_close_from_another_thread_ends_a_blocked_receive(name):
    ld = linda.create(name)
    errors = []

    def waiter():
        try:
            ld.receive("k")
        except ValueError as exc:
            errors.append(str(exc))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.2)
    ld.close()
    t.join(5)
    assert not t.is_alive()
    assert errors == ["linda closed while waiting"]


# -- processes, threads, signals, forks -------------------------------------------

def test_python_processes_exchange_many_values_across(made):
    n = 2000
    p = subprocess.Popen([sys.executable, "-c", (
        "import sys, ipc.linda as L\n"
        "l = L.open(sys.argv[1])\n"
        "for i in range(int(sys.argv[2])):\n"
        "    k, v = l.receive('in', timeout=30)\n"
        "    l.send('out', [v, v * 2])\n"), made.name, str(n)],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    made.limit("in", 10)
    for i in range(n):
        made.send("in", i, timeout=30)
    got = [made.receive("out", timeout=30)[1] for _ in range(n)]
    assert got == [[i, 2 * i] for i in range(n)]
    rc, _, err = finish(p)
    assert rc == 0, err


def test_threads_share_one_handle_without_loss(made):
    per, senders = 500, 4
    got: list[int] = []

    def send(base: int) -> None:
        for i in range(per):
            made.send("k", base + i)

    def receive() -> None:
        for _ in range(per):
            got.append(made.receive("k", timeout=30)[1])

    ts = [threading.Thread(target=send, args=(b * 10_000,)) for b in range(senders)]
    ts += [threading.Thread(target=receive) for _ in range(senders)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert sorted(got) == sorted(b * 10_000 + i for b in range(senders) for i in range(per))


def test_ctrl_c_ends_a_blocked_receive(made):
    p = subprocess.Popen([sys.executable, "-c", (
        "import sys, ipc.linda as L\n"
        "l = L.open(sys.argv[1]); print('ready', flush=True)\n"
        "try:\n    l.receive('k')\nexcept KeyboardInterrupt:\n    print('interrupted')\n"),
        made.name], env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    wait_line(p)
    assert still_blocked(p)
    interrupt(p)
    _rc, out, err = finish(p)
    assert out.strip() == "interrupted", err
    made.send("k", 1)                          # nothing was taken, nothing is stuck
    assert made.receive("k", timeout=0) == ("k", 1)


def test_waiting_uses_no_cpu(made):
    p = subprocess.Popen([sys.executable, "-c", (
        "import sys, ipc.linda as L\n"
        "l = L.open(sys.argv[1]); print('ready', flush=True)\n"
        "print(l.receive('k', timeout=30)[1], flush=True)\n"), made.name],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_line(p)
    import psutil
    proc = psutil.Process(p.pid)
    before = proc.cpu_times()
    time.sleep(1.5)
    after = proc.cpu_times()
    made.send("k", "done")
    _rc, out, err = finish(p)
    assert out.strip() == "done", err
    # A poll of even 10 ms would cost far more than this over 1.5 s.
    assert (after.user + after.system) - (before.user + before.system) < 0.05


def test_a_forked_child_uses_the_inherited_handle(made):
    made.limit("k", 1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 1
        try:
            made.send("k", "from child", timeout=10)
            made.send("k", "second", timeout=10)   # waits for the parent's receive
            code = 0
        finally:
            os._exit(code)
    assert made.receive("k", timeout=10) == ("k", "from child")
    assert made.receive("k", timeout=10) == ("k", "second")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _file(made.name).exists()          # the child's exit removed nothing


def test_sigkill_of_a_lock_holder_leaves_the_linda_usable(made):
    """A process SIGKILLed while it holds the lock, mid-change: the kernel
    drops its flock, and the others see the last committed state."""
    made.send("k", "kept")
    code = (
        "import sys, fcntl, ipc.linda as L\n"
        "l = L.open(sys.argv[1])\n"
        "fcntl.flock(l._store._fd, fcntl.LOCK_EX)\n"
        "l._store._mm[64 + 10:64 + 20] = b'\\xc1' * 10\n"   # garbage in the spare buffer
        "print('ready', flush=True)\n"
        "import time; time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code, made.name], env=child_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_line(p)
    got = []
    t = threading.Thread(target=lambda: got.append(made.count("k")))
    t.start()
    t.join(0.3)
    assert t.is_alive()                        # it really held the lock
    p.kill()
    p.wait()
    t.join(10)
    assert got == [1]
    assert made.receive("k", timeout=0) == ("k", "kept")


_SENDER = """
import os, sys, ipc.linda as L
l = L.open(sys.argv[1]); me = int(sys.argv[2]); log = open(sys.argv[3], "a", buffering=1)
i = 0
while True:
    v = me * 10_000_000 + i
    l.send("q", v, timeout=30)
    log.write(f"{v}\\n")          # reported as sent only now
    i += 1
"""

_RECEIVER = """
import sys, ipc.linda as L
l = L.open(sys.argv[1]); log = open(sys.argv[2], "a", buffering=1)
while True:
    k, v = l.receive("q", "stop", timeout=30)
    if k == "stop":
        break
    log.write(f"{v}\\n")
"""


_SENDER_LUA = """
local l = assert(require("ipc.linda").open(arg[1]))
local me, log = tonumber(arg[2]), assert(io.open(arg[3], "a"))
log:setvbuf("line")
local i = 0
while true do
  local v = me * 10000000 + i
  assert(l:send(30, "q", v))
  log:write(string.format("%d\\n", v))   -- reported as sent only now
  i = i + 1
end
"""

_RECEIVER_LUA = """
local l = assert(require("ipc.linda").open(arg[1]))
local log = assert(io.open(arg[2], "a"))
log:setvbuf("line")
while true do
  local k, v = l:receive(30, "q", "stop")
  if k == "stop" then break end
  assert(k, v)
  log:write(string.format("%d\\n", v))
end
"""


def _lines(paths: list[Path]) -> list[int]:
    out: list[int] = []
    for p in paths:
        if p.exists():
            out += [int(x) for x in p.read_text().split("\n") if x.strip().isdigit()]
    return out


@pytest.mark.timeout(240)
def test_kill_test_nothing_sent_is_lost_or_duplicated(made, tmp_path):
    """Senders and receivers on one linda while random ones are SIGKILLed
    and replaced.  Every value a sender logged as sent is received exactly
    once or is still in the linda, but for at most one per receiver killed
    (killed between its receive and its log line); nothing is received
    twice; nothing deadlocks."""
    made.limit("q", 20)                          # senders block too
    rng = random.Random(1234)
    procs: dict[int, tuple[str, subprocess.Popen]] = {}
    sent_logs: list[Path] = []
    recv_logs: list[Path] = []
    serial = [0]

    scripts = {}
    for what, text in (("s", _SENDER_LUA), ("r", _RECEIVER_LUA)):
        scripts[what] = tmp_path / f"{what}.lua"
        scripts[what].write_text(text)

    def start(role: str) -> None:
        # Python and Lua children (on the two engines that implement hooks,
        # signals and numbers differently) send and receive on one linda.
        serial[0] += 1
        n = serial[0]
        kind = rng.choice(["python", *TWO_ENGINES])
        log = tmp_path / f"{role}{n}.log"
        (sent_logs if role == "s" else recv_logs).append(log)
        extra = [str(n), str(log)] if role == "s" else [str(log)]
        if kind == "python":
            cmd = [sys.executable, "-c", _SENDER if role == "s" else _RECEIVER, made.name, *extra]
        else:
            cmd = [*LUAIPC, str(scripts[role]), made.name, *extra]
        p = subprocess.Popen(cmd, env=child_env(None if kind == "python" else kind),
                             stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs[p.pid] = (role, p)

    for role in "sssrrr":
        start(role)
    receivers_killed = 0
    kills = 0
    end = time.monotonic() + 12
    while time.monotonic() < end:
        time.sleep(rng.uniform(0.05, 0.3))
        pid = rng.choice(list(procs))
        role, p = procs.pop(pid)
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        receivers_killed += role == "r"
        start(role)
    # Stop: senders killed (a sender's kill loses nothing that it logged),
    # receivers told to stop once the queue is drained.
    for pid, (role, p) in list(procs.items()):
        if role == "s":
            p.send_signal(signal.SIGKILL)
            p.wait()
            del procs[pid]
    for _ in procs:
        made.send("stop", True)
    for _, p in procs.values():
        p.wait(60)
        assert p.returncode == 0, p.stderr.read() if p.stderr else ""
    left = []
    while True:
        try:
            left.append(made.receive("q", timeout=0)[1])
        except ipc.Timeout:
            break
    received = _lines(recv_logs) + left
    sent = set(_lines(sent_logs))
    assert kills > 20 and len(sent) > 300, (kills, len(sent))
    assert len(received) == len(set(received)), "a value was received twice"
    lost = sent - set(received)
    print(f"kill test: {kills} processes killed ({receivers_killed} receivers), "
          f"{len(sent)} values reported sent, {len(received)} received, {len(lost)} lost")
    assert len(lost) <= receivers_killed, (len(lost), receivers_killed)
    assert made.count("q") == 0


def test_no_kills_every_value_arrives_exactly_once(made, tmp_path):
    made.limit("q", 5)
    senders = [subprocess.Popen([sys.executable, "-c", (
        "import sys, ipc.linda as L\n"
        "l = L.open(sys.argv[1]); me = int(sys.argv[2])\n"
        "for i in range(300):\n    l.send('q', me * 1000 + i, timeout=30)\n"),
        made.name, str(s)], env=child_env()) for s in range(3)]
    log = tmp_path / "r.log"
    receivers = [subprocess.Popen([sys.executable, "-c", _RECEIVER, made.name, str(log)],
                                  env=child_env()) for _ in range(2)]
    for p in senders:
        assert p.wait(60) == 0
    for _ in receivers:
        made.send("stop", True)
    for p in receivers:
        assert p.wait(60) == 0
    got = _lines([log])
    assert sorted(got) == sorted(s * 1000 + i for s in range(3) for i in range(300))
