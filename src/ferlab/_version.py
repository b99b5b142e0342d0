"""The package version, in a module of its own so that any part of ferlab can read it without
importing the package's public facade (which would close an import cycle)."""
__version__ = "1.0.0"
