"""ipcctl's scanner: the named IPC objects on this machine, the processes
using them, and removing the ones nobody uses.  Linux only: it reads
``/dev/shm``, the mqueue filesystem and ``/proc``, and asks the kernel.

- ``objects.py``: the objects, where each kind lives, and the one rule for
  their state (in use, orphaned, unknown);
- ``holders.py``: who holds what, from ``/proc/PID/maps`` and the
  ``/proc/PID/fd`` links, and which processes we cannot inspect;
- ``lease.py``: whether any process at all has a file open or mapped,
  from the kernel, by taking a write lease;
- ``census.py``: ``list_objects``, which puts those together;
- ``clean.py``: ``remove`` by name and the ``clean`` policy.
"""
from .census import list_objects
from .clean import CleanResult, clean, remove
from .objects import (
    IN_USE,
    KINDS,
    ORPHANED,
    UNKNOWN,
    Holder,
    NamedObject,
    check_name,
    mqueue_dir,
    shm_dir,
)

__all__ = ["IN_USE", "KINDS", "ORPHANED", "UNKNOWN", "CleanResult", "Holder",
           "NamedObject", "check_name", "clean", "list_objects", "mqueue_dir",
           "remove", "shm_dir"]
