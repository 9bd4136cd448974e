"""Running children as the unprivileged user ``nobody``, for the permission
tests (root only)."""
from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig

import pytest

from .children import ROOT

__all__ = ["AS_NOBODY", "IS_ROOT", "NOBODY", "nobody_env", "nobody_python", "run_as_nobody"]

#: The unprivileged user (and group) the permission tests switch to.
NOBODY = 65534
IS_ROOT = os.geteuid() == 0
#: argv prefix that runs a command as nobody: no groups, and (a uid change
#: from 0) no capabilities.
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def nobody_env(extra: dict | None = None) -> dict:
    """The environment for a child running as nobody: ours, less what
    points into root's venv or picks an engine, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LUAIPC_ENGINE", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra or {})
    return env


def run_as_nobody(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run argv as nobody (uid/gid 65534, no supplementary groups), output as text."""
    # Python's own switch: setgroups([]) then setgid then setuid, in the
    # child before exec.  A uid change from 0 clears the capability sets.
    return subprocess.run(argv, user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
                          env=nobody_env(env), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


_found: list | None = None


def nobody_python() -> tuple[str, dict]:
    """An interpreter the nobody user can run, with the env it needs.

    The venv's own python is tried first; where it cannot be reached (here
    it links into /root, which is 0700) the system interpreter of the same
    version is used with the venv's site-packages and this checkout on
    PYTHONPATH.  Skips if there is none.
    """
    global _found
    if _found is None:
        ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
        paths = [str(ROOT), sysconfig.get_paths()["purelib"], *site.getsitepackages()]
        candidates = [(sys.executable, {})]
        for d in ("/usr/bin", "/usr/local/bin", "/bin"):
            candidates.append((f"{d}/python{ver}", {"PYTHONPATH": os.pathsep.join(paths)}))
        _found = []
        for exe, env in candidates:
            try:
                r = run_as_nobody([exe, "-c", "import ipc.shm, ipc.sem, ipc.mq, lupa, psutil"],
                                  env)
            except OSError:
                continue
            if r.returncode == 0:
                _found = [exe, env]
                break
    if not _found:
        pytest.skip(f"no Python {sys.version_info[:2]} with the ipc package that the "
                    f"nobody user can run (the venv's interpreter is not reachable)")
    return _found[0], dict(_found[1])
