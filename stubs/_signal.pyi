# Types for _signal, the C module under signal (typeshed has none): ipc
# imports it where importing signal, which wraps these in enums, would cost
# start-up time.  The same functions as signal's, with plain ints.
# Only mypy reads this file (mypy_path in pyproject.toml); it is not installed.
from collections.abc import Callable, Iterable
from signal import struct_siginfo as struct_siginfo
from types import FrameType
from typing import Any, TypeAlias

from typing_extensions import Never

_Handler: TypeAlias = Callable[[int, FrameType | None], Any] | int | None

NSIG: int
SIG_DFL: int
SIG_IGN: int
SIG_BLOCK: int
SIG_UNBLOCK: int
SIG_SETMASK: int
SIGHUP: int
SIGINT: int
SIGQUIT: int
SIGKILL: int
SIGPIPE: int
SIGTERM: int
SIGCHLD: int
SIGUSR1: int
SIGUSR2: int

def default_int_handler(signalnum: int, frame: FrameType | None, /) -> Never: ...
def getsignal(signalnum: int, /) -> _Handler: ...
def signal(signalnum: int, handler: _Handler, /) -> _Handler: ...
def set_wakeup_fd(fd: int, /, *, warn_on_full_buffer: bool = True) -> int: ...
def raise_signal(signalnum: int, /) -> None: ...
def pthread_kill(thread_id: int, signalnum: int, /) -> None: ...
def pthread_sigmask(how: int, mask: Iterable[int], /) -> set[int]: ...
def sigtimedwait(sigset: Iterable[int], timeout: float, /) -> struct_siginfo | None: ...
