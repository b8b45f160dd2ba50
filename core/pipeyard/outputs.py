"""BaseOutput: the dataclass base of every model, scheduler and pipeline output.

Outputs behave as diffusers' do, so code written for either reads them the same way:

* by attribute (``out.images``), by key (``out["images"]``) or by position (``out[0]``),
  where keys and positions count only the fields that are not None;
* ``to_tuple()`` gives what ``return_dict=False`` returns;
* like a mapping: ``keys()``, ``values()``, ``items()``, ``"images" in out``, ``len(out)``,
  and iteration yields the keys (as iterating diffusers' ``OrderedDict``-based outputs does);
* ``out["images"] = x`` sets the field (``del`` and ``pop`` are refused).

Subclasses are ordinary ``@dataclass`` classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any


class BaseOutput:
    """Mixin for ``@dataclass`` outputs: attribute, key and index access; ``to_tuple()``."""

    def to_tuple(self) -> tuple[Any, ...]:
        """The fields that are not None, in declaration order."""
        return tuple(getattr(self, name) for name in self.keys())

    def keys(self) -> list[str]:
        """Names of the fields that are not None, in declaration order."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]  # type: ignore[arg-type]

    def values(self) -> list[Any]:
        return list(self.to_tuple())

    def items(self) -> list[tuple[str, Any]]:
        return [(name, getattr(self, name)) for name in self.keys()]

    def __getitem__(self, key: int | slice | str) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key not in {f.name for f in dataclasses.fields(self)}:  # type: ignore[arg-type]
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        setattr(self, key, value)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())
