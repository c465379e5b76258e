"""brgm's version, kept in the kernel: ``brgm.__version__``, and the version of the built-in plugins."""

__version__ = "0.1.0"
