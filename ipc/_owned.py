"""The creator-owned name: the one home of "the creator's close unlinks".

A handle that created a named object (a shared-memory segment, a semaphore,
a message queue, and every named object added later) removes the name when
it is closed or collected, as LuaIPC does.  Every module follows the same
three rules, written here once:

* **Only the creating process unlinks.**  A child made by ``fork()``
  (``os.fork``, multiprocessing's fork start method) inherits the handle.
  When the child closes it, drops it, or exits (atexit runs the
  finalizers), it releases only what is its own: its mapping, its
  descriptor, its ``sem_t`` mapping (``sem_close`` and ``munmap`` act on the
  calling process's address space alone).  The name stays for the parent.
  Two checks say "this is the creating process": the pid, and a fork
  generation that ``os.register_at_fork`` bumps in every child.  The
  generation covers a grandchild that is given the creator's pid after the
  creator died (pids are reused); the pid covers a fork that Python's
  at-fork hooks do not see (``fork()`` called from C).
* **Unlinked at most once.**  After ``unlink()`` the handle no longer owns
  the name ("detach on unlink"): its close must not remove a later object
  that someone else created under the same name.
* **The finalizer never raises** (it may run at interpreter exit).

Usage, for a module's handle::

    owned = Owned(lambda: posix_ipc.unlink_semaphore(path)) if creating else None
    self._owned = owned
    self._finalizer = weakref.finalize(self, release_handle, close_fn, owned)

``release_handle`` never references the handle, so the handle can be
collected.
"""
from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["Owned", "release_handle"]

# Bumped in every child process that os.fork() makes (see the docstring).
_generation = 0


def _forked() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_forked)


class Owned:
    """The right to unlink a name this process created (see the module
    docstring).  ``unlink`` is the call that removes the name (it may
    raise); ``Owned`` calls it at most once, and only in the creator."""

    __slots__ = ("_generation", "_pid", "_unlink")

    def __init__(self, unlink: Callable[[], None]) -> None:
        self._unlink: Callable[[], None] | None = unlink
        self._pid = os.getpid()
        self._generation = _generation

    @property
    def held(self) -> bool:
        """True in the creating process until the name is released."""
        return (self._unlink is not None and self._generation == _generation
                and self._pid == os.getpid())

    def detach(self) -> None:
        """Give up the name without removing it (after an explicit unlink,
        or when the name is handed on)."""
        self._unlink = None

    def release(self) -> None:
        """Remove the name if this process created it and still owns it.

        Never raises: the name may be gone already (someone ran ``unlink``
        or ``ipcctl rm``), and LuaIPC ignores ``shm_unlink``'s result too.
        """
        if not self.held:
            return
        unlink, self._unlink = self._unlink, None
        if unlink is None:
            return  # another thread released it between the check and the swap
        try:
            unlink()
        except Exception:  # noqa: BLE001  (gone already: fine)
            pass


def release_handle(close: Callable[[], None], owned: Owned | None) -> None:
    """A handle's finalizer: close what this process holds (a mapping, a
    descriptor), then give up the name as ``Owned.release`` says.  Never
    raises."""
    try:
        close()
    except Exception:  # noqa: BLE001  (a finalizer must not raise)
        pass
    if owned is not None:
        owned.release()
