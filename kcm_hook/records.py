"""Plain record classes with the equality and repr a dataclass would give them.

Not dataclasses: `import dataclasses` costs ~6 ms (it imports inspect), and
the hooks pay for every import at every container start.
"""


class Record:
    """Equality and repr over the attributes named in `_fields`."""

    _fields = ()
    __hash__ = None

    def _values(self):
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __repr__(self):
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({values})"


class FrozenRecord(Record):
    """A Record that hashes, and whose fields are set once, by `_freeze`."""

    def _freeze(self, *values):
        if len(values) != len(self._fields):
            raise TypeError(f"{type(self).__name__} takes {len(self._fields)} fields")
        for name, value in zip(self._fields, values):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot set {name}: {type(self).__name__} is frozen")

    def __hash__(self):
        return hash(self._values())
