"""fleet: a Flask service as many uWSGI vassals behind nginx, managed by dropping files into a folder."""

__version__ = "0.1.0"
