"""The OS layer of ipc.mq: the calls into posix_ipc for a named message
queue and the kernel's limits on queues, each failure translated once
(ipc/_errors.py), a refused size explained in words.

``MessageQueue`` opens, creates and unlinks through it.  The hot calls,
mq_send and mq_receive, are the bound ``send`` and ``receive`` of the
posix_ipc object that ``create`` and ``open`` return: ``MessageQueue``
calls them inline, and hands them to the Lua face
(``MessageQueue.os_calls``), so that neither pays a frame of ours per call.
Every descriptor is non-blocking (O_NONBLOCK): a full or empty queue fails
at once with ``posix_ipc.BusyError``, and the caller decides how to wait.
"""
from __future__ import annotations

import builtins
import errno
import os
import resource

import posix_ipc

from .._errors import from_posix_ipc, os_error, posix_errors

__all__ = ["HARD_MSGMAX", "HARD_MSGSIZEMAX", "PRIORITY_MAX", "SYSCTL_DIR",
           "create", "default", "limits", "open", "unlink"]

#: Highest priority a message can have (lowest is 0).
PRIORITY_MAX: int = posix_ipc.QUEUE_PRIORITY_MAX
#: Where Linux shows (and lets root change) the queue limits.
SYSCTL_DIR = "/proc/sys/fs/mqueue"
#: Limits the kernel enforces even for a process with CAP_SYS_RESOURCE
#: (HARD_MSGMAX and HARD_MSGSIZEMAX in include/linux/ipc_namespace.h).
HARD_MSGMAX = 65536
HARD_MSGSIZEMAX = 16 * 1024 * 1024

#: What a queue gets when its size is not given, where /proc cannot say.
_FALLBACK = {"msg_default": posix_ipc.QUEUE_MESSAGES_MAX_DEFAULT,
             "msgsize_default": posix_ipc.QUEUE_MESSAGE_SIZE_MAX_DEFAULT}


def limits() -> dict[str, int | None]:
    """The system's queue limits, read from ``/proc/sys/fs/mqueue``.

    Keys: ``msg_max`` (most messages a queue may hold), ``msgsize_max``
    (largest message size), ``msg_default``/``msgsize_default`` (the sizes
    a queue gets when one is not given), ``queues_max`` (queues on the
    system); ``None`` where the file cannot be read.  A process with
    CAP_SYS_RESOURCE may exceed ``msg_max`` and ``msgsize_max``.
    """
    out: dict[str, int | None] = {}
    for key in ("msg_max", "msgsize_max", "msg_default", "msgsize_default", "queues_max"):
        try:
            with builtins.open(f"{SYSCTL_DIR}/{key}") as f:
                out[key] = int(f.read().strip())
        except (OSError, ValueError):
            out[key] = None
    return out


def default(key: str) -> int:
    """The size a new queue gets when it is not given: ``key`` is
    ``"msg_default"`` (maxmsg) or ``"msgsize_default"`` (msgsize)."""
    return limits().get(key) or _FALLBACK[key]


def create(path: str, maxmsg: int, msgsize: int) -> posix_ipc.MessageQueue:
    """``mq_open(path, O_CREAT | O_EXCL | O_NONBLOCK, 0600)`` of a queue of
    ``maxmsg`` messages of at most ``msgsize`` bytes; a size the kernel
    refuses raises an EINVAL that names the limit (``_limit_error``)."""
    if maxmsg > HARD_MSGMAX or msgsize > HARD_MSGSIZEMAX:
        # what the kernel says (EINVAL), before posix_ipc's C long
        # overflows on a size past 2**63
        raise _limit_error(path[1:], maxmsg, msgsize)
    try:
        return posix_ipc.MessageQueue(path, posix_ipc.O_CREX | posix_ipc.O_NONBLOCK,
                                      0o600, maxmsg, msgsize)
    except (posix_ipc.Error, OSError, ValueError) as exc:
        raise _create_error(exc, path[1:], maxmsg, msgsize) from None


def open(path: str) -> posix_ipc.MessageQueue:
    """``mq_open(path, O_NONBLOCK)`` of an existing queue."""
    with posix_errors(path):
        return posix_ipc.MessageQueue(path, posix_ipc.O_NONBLOCK)


def unlink(path: str) -> None:
    """``mq_unlink(path)`` (FileNotFoundError if there is no such name)."""
    with posix_errors(path):
        posix_ipc.unlink_message_queue(path)


# -- why a queue could not be made ---------------------------------------------

def _has_cap_sys_resource() -> bool:
    """Whether the kernel lets this process exceed msg_max/msgsize_max."""
    try:
        with builtins.open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 24 & 1)  # CAP_SYS_RESOURCE
    except (OSError, ValueError):
        pass
    return False


def _limit_error(name: str, maxmsg: int, msgsize: int) -> OSError:
    """Why the kernel refused a queue of these sizes (EINVAL), in words.

    Without CAP_SYS_RESOURCE the sysctl limits bind; with it (root, usually)
    only the kernel's hard limits do, so the message names the one that
    really applied.
    """
    lim = limits()
    privileged = _has_cap_sys_resource()
    for value, what, key, hard in ((maxmsg, "maxmsg", "msg_max", HARD_MSGMAX),
                                   (msgsize, "msgsize", "msgsize_max", HARD_MSGSIZEMAX)):
        sysctl = lim.get(key)
        if not privileged and sysctl is not None and value > sysctl:
            return os_error(errno.EINVAL, name,
                            f"{what} {value} exceeds the system limit {sysctl} "
                            f"({SYSCTL_DIR}/{key})")
        if value > hard:
            return os_error(errno.EINVAL, name,
                            f"{what} {value} exceeds the kernel limit {hard}")
    return os_error(errno.EINVAL, name)


def _create_error(exc: BaseException, name: str, maxmsg: int, msgsize: int) -> BaseException:
    if isinstance(exc, ValueError):  # posix_ipc's word for EINVAL
        return _limit_error(name, maxmsg, msgsize)
    err = from_posix_ipc(exc, name, creating=True)
    if getattr(err, "errno", None) == errno.EMFILE and _can_open_a_descriptor():
        # mq_open says EMFILE for two limits: the descriptors (then the
        # plain "Too many open files" is the answer) and the per-user byte
        # budget RLIMIT_MSGQUEUE, far more likely for a big queue.
        soft = resource.getrlimit(resource.RLIMIT_MSGQUEUE)[0]
        return os_error(errno.EMFILE, name,
                        f"cannot create a queue of {maxmsg} x {msgsize} bytes: over the "
                        f"per-user queue memory limit RLIMIT_MSGQUEUE ({soft} bytes, "
                        f"ulimit -q) or the open-files limit")
    return err


def _can_open_a_descriptor() -> bool:
    """Whether the descriptor limit leaves room for one more (a probe that
    closes what it opens; its own EMFILE is the answer)."""
    try:
        os.close(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        return exc.errno != errno.EMFILE
    return True
