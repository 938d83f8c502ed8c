"""``python -m bench.tiering`` (see ``bench.tiering`` and ``bench.tiering.cli``)."""

from bench.tiering.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
