"""``python -m brgm`` is the ``brgm`` command."""

from brgm.cli.app import main

if __name__ == "__main__":
    main()
