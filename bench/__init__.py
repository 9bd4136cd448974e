"""luaipc benchmarks: every module beside its reference, measured in one run.

    python -m bench [--quick | --smoke] [--json FILE] [--only sem,shm,...]
                    [--engines lua5.4,luajit2.1,python] [--reps N]
                    [--c-luaipc DIR [--lua lua5.3]]

Each case is run from Lua (lua5.4 and luajit2.1 runtimes in this process,
or ``luaipc`` children) and from Python, beside the same work done the
plainest way in Python (raw posix_ipc, mmap slices, fcntl.lockf,
subprocess...).  Ours and the references run interleaved, round after
round, so a busy machine slows them alike; the median of the rounds is
quoted and ``ratio`` is ours/reference in the row's unit (for ``us`` and
``ms`` lower is better, for ``MB/s`` higher is better; ``better`` says
which).  Not tests: nothing here asserts a timing.

The ``vs_c`` rows run the same Lua scripts under ``luaipc`` (lua5.3, lua5.4,
luajit2.1) and under ``lua5.3`` with the C LuaIPC built from its repository,
given by ``--c-luaipc DIR``; see bench/cases/vs_c.py.
"""
