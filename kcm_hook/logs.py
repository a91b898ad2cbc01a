"""Loggers for the hooks' path, which import `logging` only when a record is due.

The hooks run at every container start, and `import logging` costs ~5 ms
there, a quarter of a no-op Python hook. A module on that path takes its
logger from `get_logger(__name__)` rather than logging.getLogger: same
methods, same lazy %s arguments. When the command line has deferred its
logging setup (`defer`), a record below the threshold is dropped without
importing logging and the first one at or above it runs the setup first.
Otherwise (every other command, tests, library use) each record goes
straight to logging.
"""

DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40

_deferred = None  # (threshold, setup) while the command line defers its setup


def defer(threshold, setup):
    """Drop records below `threshold`; call `setup()` before the first other one."""
    global _deferred
    _deferred = (threshold, setup)


def cancel():
    """Forget a deferred setup: records go straight to logging again."""
    global _deferred
    _deferred = None


def get_logger(name):
    return Logger(name)


class Logger:
    """The part of logging.Logger the hooks' path uses."""

    def __init__(self, name):
        self.name = name

    def debug(self, msg, *args, **kwargs):
        self._log(DEBUG, msg, args, kwargs)

    def info(self, msg, *args, **kwargs):
        self._log(INFO, msg, args, kwargs)

    def warning(self, msg, *args, **kwargs):
        self._log(WARNING, msg, args, kwargs)

    def error(self, msg, *args, **kwargs):
        self._log(ERROR, msg, args, kwargs)

    def _log(self, level, msg, args, kwargs):
        global _deferred
        if _deferred is not None:
            threshold, setup = _deferred
            if level < threshold:
                return
            _deferred = None
            setup()
        import logging

        # stacklevel 3: the record names the caller of debug(), not this module.
        kwargs.setdefault("stacklevel", 3)
        logging.getLogger(self.name).log(level, msg, *args, **kwargs)
