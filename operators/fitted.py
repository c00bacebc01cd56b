"""Save and load of a learned operator's fitted state, by the scikit-learn convention.

The convention: the constructor stores each of its parameters as an attribute
of the same name (in a form it accepts back), and what `fit` learns lives in
public attributes ending in `_`. Those two sets are the whole state, so `save` needs no per-class list:

- `fitted.json`: the class name, the parameters and every learned attribute
  that JSON holds (numbers, strings, None, lists, dicts);
- `<name>.npy`: each learned NumPy array (`centroids_` -> `centroids.npy`),
  loaded without pickle;
- anything else (a LightGBM booster, Arrow arrays) is named in the class's
  `_extra_state` and written by its `_save_extra` hook.

`load` calls the constructor with the saved parameters, so its validation runs
again, then sets the learned attributes. Nothing is pickled: a work directory
holds data, not code to run at load.

JSON keeps neither tuples nor non-string dict keys: a learned value that needs
them converts where it is used, or goes through the hook.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

STATE_FILE = "fitted.json"


class Fitted:
    """Mixin: `obj.save(directory)` and `Cls.load(directory)` for a scikit-learn shaped class."""

    # Learned attributes neither JSON nor a NumPy array: `_save_extra` / `_load_extra` handle them.
    _extra_state: ClassVar[tuple[str, ...]] = ()
    # Constructor arguments `load` passes instead of the saved ones: settings of the machine
    # that fitted the state, not of the state itself.
    _load_overrides: ClassVar[dict[str, Any]] = {}

    @classmethod
    def _param_names(cls) -> list[str]:
        if cls.__init__ is object.__init__:
            return []
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop self
        if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            raise TypeError(f"{cls.__name__}.__init__ must name its parameters (no *args or **kwargs) to be saved")
        return [p.name for p in params]

    def _learned(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        learned = self._learned()
        if not learned:
            raise ValueError(f"{type(self).__name__} is not fitted: nothing to save")
        arrays = {k: v for k, v in learned.items() if isinstance(v, np.ndarray)}
        values = {k: v for k, v in learned.items() if k not in arrays and k not in self._extra_state}
        state = {
            "class": type(self).__qualname__,
            "params": {name: getattr(self, name) for name in self._param_names()},
            "learned": values,
            "arrays": sorted(arrays),
        }
        try:
            text = json.dumps(state)
        except TypeError as e:
            raise TypeError(
                f"{type(self).__name__}: {e}; a learned attribute that is neither JSON nor a NumPy array"
                " belongs in _extra_state, written by _save_extra"
            ) from e
        directory.mkdir(parents=True, exist_ok=True)
        for name, value in arrays.items():
            np.save(directory / _array_file(name), value, allow_pickle=False)
        self._save_extra(directory)
        (directory / STATE_FILE).write_text(text)  # last: a directory with it is complete

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        directory = Path(directory)
        state = json.loads((directory / STATE_FILE).read_text())
        if state["class"] != cls.__qualname__:
            raise ValueError(f"{directory} holds a fitted {state['class']}, not a {cls.__qualname__}")
        obj = cls(**{**state["params"], **cls._load_overrides})
        for name, value in state["learned"].items():
            setattr(obj, name, value)
        for name in state["arrays"]:
            setattr(obj, name, np.load(directory / _array_file(name), allow_pickle=False))
        obj._load_extra(directory)
        return obj

    def _save_extra(self, directory: Path) -> None:
        """Write the attributes named in `_extra_state` (there are none by default)."""

    def _load_extra(self, directory: Path) -> None:
        """Read back what `_save_extra` wrote; runs last, so it may also rebuild derived in-memory state."""


def _array_file(name: str) -> str:
    return f"{name.removesuffix('_')}.npy"
