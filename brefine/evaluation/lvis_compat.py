"""Make the ``lvis`` package (0.5.3, the last release) run on NumPy >= 1.24.

``lvis.eval`` still uses ``np.float``, an alias NumPy removed in 1.24, so
``LVISEval.accumulate`` (and MMDetection's ``LVISMetric``) fails with an
AttributeError. The fix is scoped to that one module: its ``np`` becomes a
view of NumPy that also answers the removed aliases. NumPy itself, and every
other module, is left alone; nothing in site-packages is edited.
"""

from __future__ import annotations

import types

import numpy

# the aliases NumPy 1.24 removed, as NumPy 1.20 defined them
REMOVED_ALIASES = {"float": float, "int": int, "bool": bool, "object": object, "str": str}


class _NumpyWithAliases(types.ModuleType):
    def __getattr__(self, name: str):
        if name in REMOVED_ALIASES:
            return REMOVED_ALIASES[name]
        return getattr(numpy, name)


def patch_lvis() -> bool:
    """Apply the fix if ``lvis`` is installed; True if it was applied."""
    try:
        import lvis.eval
    except ImportError:
        return False
    if not isinstance(lvis.eval.np, _NumpyWithAliases):
        lvis.eval.np = _NumpyWithAliases("numpy")
    return True


patch_lvis()
