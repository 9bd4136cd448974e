"""ipc.proc from Python: real children, real pipes."""
from __future__ import annotations

import gc
import os
import signal
import sys
import time

import psutil
import pytest
from helpers.children import pid_gone
from helpers.proc import FLOOD, Sink

import ipc
from ipc import proc

pytestmark = pytest.mark.timeout(120)

PY = sys.executable


def my_children() -> set[int]:
    return {c.pid for c in psutil.Process().children(recursive=True)}


# -- commands: shell strings and literal argument lists --------------------------

def test_list_command_passes_shell_metacharacters_literally(tmp_path):
    nasty = "$(touch pwned1); `touch pwned2` | touch pwned3 && * ; > pwned4 'q' \"dq\" \\ \n$HOME"
    sink = Sink()
    p = proc.spawn([PY, "-c", "import sys; sys.stdout.write(sys.argv[1])", nasty],
                   stdout=True, callback=sink, cwd=tmp_path)
    assert p.wait() == 0
    assert sink.out.decode() == nasty
    assert list(tmp_path.iterdir()) == []


def test_string_command_runs_through_the_shell(tmp_path):
    sink = Sink()
    p = proc.spawn("echo $((6 * 7)) | tr 4 X", stdout=True, callback=sink)
    assert p.wait() == 0
    assert sink.out == b"X2\n"


def test_missing_executable_in_list_form_raises():
    with pytest.raises(FileNotFoundError):
        proc.spawn(["/nonexistent/luaipct-no-such-program"])


def test_a_command_line_in_a_list_says_what_was_meant():
    with pytest.raises(ipc.NotFoundError) as info:
        proc.run(["echo hi", "tr a-z A-Z"])
    assert info.value.filename == "echo hi"
    assert "pass a shell command line as one string" in str(info.value)
    with pytest.raises(ipc.NotFoundError) as info:
        proc.spawn(["luaipct-no-such-program"])
    assert "shell command line" not in str(info.value)   # no hint without a space


def test_missing_command_in_shell_form_exits_127():
    sink = Sink()
    p = proc.spawn("luaipct-no-such-command", stderr=True, callback=sink)
    assert p.wait() == 127
    assert p.status == ("exit", 127)
    assert b"not found" in sink.err


def test_bad_arguments():
    with pytest.raises(TypeError):
        proc.spawn("true", stdout=True)           # piped output needs a callback
    with pytest.raises(TypeError):
        proc.spawn("true", stderr=True, callback="not callable")
    with pytest.raises(TypeError):
        proc.spawn(42)
    with pytest.raises(ValueError):
        proc.spawn([])
    with pytest.raises(TypeError):
        proc.spawn("true", stdin=3.5)
    with pytest.raises(ValueError):
        proc.spawn("true", stdout=proc.STDOUT)
    with pytest.raises(ValueError):
        proc.pipeline([])


# -- the handle ------------------------------------------------------------------

def test_write_close_stdin_wait_and_attributes():
    sink = Sink()
    p = proc.spawn(["tr", "a-z", "A-Z"], stdin=True, stdout=True, callback=sink)
    assert p.pid > 0 and p.returncode is None and p.status is None and not p.finished
    p.write(b"hello ")
    p.write("world")
    p.write(bytearray(b"\n"))
    p.close_stdin()
    p.close_stdin()                               # idempotent
    with pytest.raises(ValueError):
        p.write(b"late")
    assert p.wait() == 0
    assert p.returncode == 0 and p.status == ("exit", 0) and p.finished
    assert sink.out == b"HELLO WORLD\n"
    assert repr(p).startswith("<ipc.proc.Process pid=")


def test_write_without_stdin_pipe_is_an_error():
    p = proc.spawn("true")
    with pytest.raises(ValueError):
        p.write(b"x")
    with pytest.raises(ValueError):
        p.close_stdin()
    assert p.wait() == 0


def test_exit_codes_and_signals():
    assert proc.spawn("exit 3").wait() == 3
    p = proc.spawn(["sleep", "30"])
    p.terminate()
    assert p.wait() == -signal.SIGTERM and p.status == ("signal", 15)
    p = proc.spawn(["sleep", "30"])
    p.kill()
    assert p.wait() == -signal.SIGKILL and p.status == ("signal", 9)


def test_stderr_to_stdout():
    sink = Sink()
    p = proc.spawn("echo a; echo b >&2", stdout=True, stderr=proc.STDOUT, callback=sink)
    assert p.wait() == 0
    assert sorted(sink.out.split()) == [b"a", b"b"] and sink.err == b""


def test_redirect_to_and_from_files(tmp_path):
    src, dst = tmp_path / "in", tmp_path / "out"
    src.write_bytes(b"from a file\n")
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        assert proc.spawn(["cat"], stdin=fin, stdout=fout).wait() == 0
    assert dst.read_bytes() == b"from a file\n"
    fd = os.open(dst, os.O_WRONLY | os.O_APPEND)
    try:
        assert proc.spawn("echo more", stdout=fd).wait() == 0
    finally:
        os.close(fd)
    assert dst.read_bytes() == b"from a file\nmore\n"
    sink = Sink()
    assert proc.spawn("cat", stdin=proc.DEVNULL, stdout=True, callback=sink).wait() == 0
    assert sink.out == b""


# -- nothing lost, no deadlock ------------------------------------------------------

def test_8mib_single_write_round_trips():
    data = os.urandom(1 << 16) * 128
    sink = Sink()
    p = proc.spawn(["cat"], stdin=True, stdout=True, callback=sink)
    p.write(data)
    p.close_stdin()
    assert p.wait() == 0
    assert sink.out == data


def test_100000_small_writes_round_trip():
    sink = Sink()
    p = proc.spawn(["cat"], stdin=True, stdout=True, callback=sink)
    parts = [b"%d," % i for i in range(100_000)]
    for part in parts:
        p.write(part)
    p.close_stdin()
    assert p.wait() == 0
    assert sink.out == b"".join(parts)


def test_flood_on_both_outputs_while_stdin_is_fed():
    data = os.urandom(4 << 20)
    sink = Sink()
    p = proc.spawn([PY, "-c", FLOOD], stdin=True, stdout=True, stderr=True, callback=sink)
    p.write(data)
    p.close_stdin()
    assert p.wait() == 0
    assert sink.out == b"O" * (3 << 20) + data
    assert sink.err == b"E" * (3 << 20) + data


def test_child_that_never_reads_stdin():
    p = proc.spawn("exit 4", stdin=True)
    p.write(b"x" * (8 << 20))
    p.close_stdin()
    assert p.wait() == 4


def test_interactive_replies_from_the_callback():
    lines = []
    buf = bytearray()

    def cb(stream, data):
        buf.extend(data)
        while b"\n" in buf:
            line, _, rest = bytes(buf).partition(b"\n")
            buf[:] = rest
            lines.append(line)
            n = len(lines)
            if n < 5:
                p.write(b"%d\n" % (n + 1))
            elif n == 5:
                p.close_stdin()

    p = proc.spawn('while read l; do echo "got $l"; done; echo bye',
                   stdin=True, stdout=True, callback=cb)
    p.write(b"1\n")
    assert p.wait() == 0
    assert lines == [b"got 1", b"got 2", b"got 3", b"got 4", b"got 5", b"bye"]


# -- timeouts, the tree, lifetime ---------------------------------------------------

def test_wait_timeout_raises_and_can_be_retried():
    p = proc.spawn(["sleep", "30"], stdout=True, callback=Sink())
    with pytest.raises(ipc.Timeout) as info:
        p.wait(0.2)
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(ipc.Timeout):
        p.wait(0)
    assert p.returncode is None
    p.kill()
    assert p.wait(10) == -9


def test_wait_timeout_when_only_reaping_remains():
    p = proc.spawn("exec sleep 30")               # no pipes at all
    t0 = time.monotonic()
    with pytest.raises(ipc.Timeout):
        p.wait(0.3)
    assert time.monotonic() - t0 >= 0.29
    p.terminate()
    assert p.wait(10) == -15


def test_output_is_delivered_while_waiting_with_timeout():
    sink = Sink()
    p = proc.spawn("echo early; exec sleep 30", stdout=True, callback=sink)
    with pytest.raises(ipc.Timeout):
        p.wait(1.0)
    assert sink.out == b"early\n"
    p.kill()
    p.wait()


def test_a_timeout_of_years_is_a_timeout():
    # poll() takes a C int of milliseconds (24.8 days): a longer timeout
    # polls again rather than overflow it (it raised OverflowError once).
    sink = Sink()
    p = proc.spawn("sleep 0.2; echo late", stdout=True, callback=sink)
    assert p.wait(1e8) == 0
    assert sink.out == b"late\n"


def test_kill_tree_reaches_grandchildren():
    p = proc.spawn("sleep 60 & sleep 60 & wait", stdout=True, callback=Sink())
    deadline = time.monotonic() + 10
    while len(psutil.Process(p.pid).children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    kids = [c.pid for c in psutil.Process(p.pid).children(recursive=True)]
    assert len(kids) == 2
    p.kill_tree()
    # the grandchildren held stdout open too: wait() returns only once they die
    assert p.wait(10) == -9
    for k in kids:
        assert pid_gone(k)


def test_collected_handle_kills_and_reaps_child():
    p = proc.spawn(["sleep", "30"], stdin=True, stdout=True, callback=Sink())
    pid = p.pid
    del p
    gc.collect()
    assert pid_gone(pid)


def test_context_manager_waits_or_kills():
    sink = Sink()
    with proc.spawn(["cat"], stdin=True, stdout=True, callback=sink) as p:
        p.write(b"in a with block")
    assert p.returncode == 0 and sink.out == b"in a with block"
    with pytest.raises(RuntimeError), proc.spawn(["sleep", "30"], stdout=True,
                                                callback=Sink()) as p:
        raise RuntimeError("boom")
    assert p.returncode is not None and p.returncode < 0
    p.close()
    p.close()                                      # idempotent


def test_callback_exception_propagates_and_wait_resumes():
    calls = []

    def cb(stream, data):
        calls.append(data)
        if len(calls) == 1:
            raise KeyError("boom")

    p = proc.spawn("printf a; sleep 0.1; printf b", stdout=True, callback=cb)
    with pytest.raises(KeyError):
        p.wait()
    assert p.wait() == 0
    assert b"".join(calls) == b"ab"


def test_idle_wait_costs_no_cpu():
    before = time.process_time()
    p = proc.spawn("sleep 1; echo done", stdin=True, stdout=True, callback=Sink())
    assert p.wait() == 0
    assert time.process_time() - before < 0.5


# -- pipelines -------------------------------------------------------------------

def test_pipeline_without_a_shell():
    sink = Sink()
    pl = proc.pipeline([["printf", "b\\na\\nc\\n"], ["sort"], ["tr", "a-z", "A-Z"]],
                       stdout=True, callback=sink)
    assert len(pl.pids) == 3 and pl.pid == pl.pids[-1]
    assert pl.wait() == 0
    assert sink.out == b"A\nB\nC\n"
    assert pl.returncodes == [0, 0, 0]
    assert "Pipeline" in repr(pl)


def test_pipeline_feeds_8mib_and_collects_stderr_of_all():
    data = os.urandom(8 << 20)
    sink = Sink()
    pl = proc.pipeline([["cat"], [PY, "-c", ("import sys; sys.stderr.write('mid\\n'); "
                                             "sys.stdout.buffer.write(sys.stdin.buffer.read())")],
                        "cat; echo end >&2"],
                       stdin=True, stdout=True, stderr=True, callback=sink)
    pl.write(data)
    pl.close_stdin()
    assert pl.wait() == 0
    assert sink.out == data
    assert sorted(sink.err.split()) == [b"end", b"mid"]


def test_pipeline_status_is_the_last_commands():
    pl = proc.pipeline(["exit 3", "cat >/dev/null; exit 5"], stdin=proc.DEVNULL)
    assert pl.wait() == 5
    assert pl.returncodes == [3, 5]


def test_pipeline_with_a_missing_program_leaves_nothing_behind():
    before = my_children()
    fds_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        proc.pipeline([["sleep", "30"], ["/nonexistent/luaipct-missing"], ["cat"]],
                      stdout=True, callback=Sink())
    assert my_children() - before == set() or all(pid_gone(p) for p in my_children() - before)
    assert len(os.listdir("/proc/self/fd")) == fds_before


# -- run() -----------------------------------------------------------------------

def test_run_collects_everything():
    r = proc.run(["sh", "-c", "cat; echo e >&2; exit 2"], b"data")
    assert r == (2, b"data", b"e\n")
    assert (r.returncode, r.stdout, r.stderr) == (2, b"data", b"e\n")
    r = proc.run([["printf", "x\\ny\\n"], ["wc", "-l"]])
    assert r.returncode == 0 and r.stdout.strip() == b"2"


def test_run_reports_every_stage_with_pipefail():
    # The middle stage fails and a later `cat` succeeds: a plain shell would
    # say 0; run() says 3, as bash's pipefail does, and keeps every status.
    r = proc.run([["printf", "a\\nb\\n"], ["sh", "-c", "cat; exit 3"], ["cat"]])
    assert r.returncodes == (0, 3, 0)
    assert r.returncode == 3 and r.stdout == b"a\nb\n"
    status, out, err = r                       # still unpacks as before
    assert (status, out, err) == (3, b"a\nb\n", b"")
    assert r.args == [["printf", "a\\nb\\n"], ["sh", "-c", "cat; exit 3"], ["cat"]]
    # the last failure decides; a signal death is -signum
    r = proc.run([["sh", "-c", "exit 4"], ["sh", "-c", "cat >/dev/null; kill -9 $$"]])
    assert r.returncodes == (4, -signal.SIGKILL) and r.returncode == -signal.SIGKILL
    r = proc.run([["true"], ["true"]])
    assert r.returncodes == (0, 0) and r.returncode == 0
    one = proc.run(["sh", "-c", "exit 5"])
    assert one.returncodes == (5,) and one.returncode == 5


def test_run_check_raises_a_called_process_error():
    import pickle
    import subprocess
    with pytest.raises(subprocess.CalledProcessError) as info:
        proc.run([["echo", "out"], ["sh", "-c", "cat; echo oops >&2; exit 4"], ["cat"]],
                 check=True)
    e = info.value
    assert isinstance(e, proc.CalledProcessError)
    assert type(e).__module__ == "ipc.proc" and not isinstance(e, OSError)
    assert (e.returncode, e.returncodes) == (4, (0, 4, 0))
    assert e.stdout == b"out\n" and e.stderr == b"oops\n"
    assert "statuses [0, 4, 0]; failed stage 2" in str(e)
    again = pickle.loads(pickle.dumps(e))  # noqa: S301 (our own bytes)
    assert (type(again), again.returncodes, again.stdout, again.stderr) == (
        proc.CalledProcessError, (0, 4, 0), b"out\n", b"oops\n")
    assert proc.run(["true"], check=True).returncode == 0
    with pytest.raises(TypeError, match="check must be a bool"):
        proc.run(["true"], check="yes")
    r = proc.run(["sh", "-c", "exit 6"])
    with pytest.raises(proc.CalledProcessError):
        r.check_returncode()
    assert pickle.loads(pickle.dumps(r)).returncodes == (6,)  # noqa: S301 (our own bytes)


def test_run_timeout_kills_the_tree():
    t0 = time.monotonic()
    with pytest.raises(ipc.Timeout):
        proc.run("sleep 30 & sleep 30; wait", timeout=0.5)
    assert time.monotonic() - t0 < 20



# Found by the hostile-input fuzz (issue 7).

def test_pipeline_refuses_a_single_string():
    # list("ls | wc") would have run "l", "s", " ", ... as commands.
    with pytest.raises(TypeError, match="list of commands"):
        proc.pipeline("ls | wc")
    with pytest.raises(TypeError, match="list of commands"):
        proc.pipeline(b"ls | wc")


@pytest.mark.parametrize("env", [5, ["A=1"], "A=1"])
def test_env_must_be_a_mapping(env):
    with pytest.raises(TypeError, match="env must be a mapping"):
        proc.spawn(["true"], env=env)


def test_timeouts_follow_the_one_rule():
    # negative waits forever (as ipc.sem and threading), a bool is an error
    p = proc.spawn(["sleep", "0.2"])
    assert p.wait(-5) == 0
    with pytest.raises(TypeError, match="timeout must be a number"):
        proc.run(["true"], timeout=False)
    with pytest.raises(ValueError, match="NaN"):
        proc.run(["true"], timeout=float("nan"))
