"""``python -m ipc`` is the luaipc interpreter."""
from .cli.luaipc import main

if __name__ == "__main__":
    raise SystemExit(main())
