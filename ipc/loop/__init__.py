"""ipc.loop: the event loop of the Lua face (``require "ipc.loop"``).

The loop itself is Lua (``face.lua``) waiting in one epoll (``lua.py``),
with helper threads standing in for the waits that have no descriptor
(``_standin.py``).
"""
__all__: list[str] = []


def __dir__() -> list[str]:
    return sorted(__all__)
