"""numba's on-disk cache for the compiled loops (``numba_loops.py``), kept valid across edits of every module
the loops compile.

numba's own cache (``njit(cache=True)``) keys a compilation by the defining file's contents, the
function's bytecode, its signature and the CPU; a loop that compiles a function of another module (the
cubic basis of ``binned_ranks.py``, the row scale's ``std_coefficient``) or reads a constant defined in
one (``options.ROW_STD_EPS``) would keep running its old machine code after that module changed (an
editable install after a pull). The cache here adds to numba's key a fingerprint of everything numba
compiles for the loop: the bytecode and constants of the loop and, recursively, of every function and
numba dispatcher it names, and the values of the other global names they read (``fingerprint``). It
also adds the compilation's variant ("parallel" or "serial"), which numba's key cannot tell apart, as
both come from one Python function.

Where numba's internals no longer offer what this needs (``FunctionCache`` and its ``_index_key``, a
dispatcher's ``_cache``), or no cache folder is writable, a loop is compiled in every process instead:
never a stale cache. tests/test_numba_cache.py checks both that an edit of another module is what runs
and that a second process loads every loop from the cache.
"""

from __future__ import annotations

import functools
import hashlib
import types
from typing import Any

import numpy as np


def fingerprint(function: types.FunctionType) -> str:
    """sha256 (hex) of what numba compiles for the Python ``function`` (module docstring): its bytecode,
    names, constants, defaults and closure values and those of every function or numba dispatcher it
    names (a global of its module, or a module's attribute), recursively, and the other global values it
    names: numbers, strings, tuples and arrays by value, a module by its name, any other object by its
    type."""
    digest = hashlib.sha256()
    _add_function(function, digest, set())
    return digest.hexdigest()


def _add_function(function: types.FunctionType, digest: Any, seen: set[int]) -> None:
    if id(function) in seen:
        return
    seen.add(id(function))
    digest.update(f"function {function.__module__}.{function.__qualname__}".encode())
    _add_code(function.__code__, function.__globals__, digest, seen)
    for value in function.__defaults__ or ():
        _add_value(value, digest, seen)
    for cell in function.__closure__ or ():
        _add_value(cell.cell_contents, digest, seen)


def _add_code(code: types.CodeType, namespace: dict[str, Any], digest: Any, seen: set[int]) -> None:
    digest.update(code.co_code)
    digest.update(repr(code.co_names).encode())
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):  # a nested function or comprehension
            _add_code(constant, namespace, digest, seen)
        else:
            _add_value(constant, digest, seen)
    named = [namespace[name] for name in code.co_names if name in namespace]
    for value in named:
        _add_value(value, digest, seen)
    # A dispatcher called as a module's attribute (``module.loop(...)``): co_names does not say whose.
    for module in (value for value in named if isinstance(value, types.ModuleType)):
        for name in code.co_names:
            attribute = getattr(module, name, None)
            if hasattr(attribute, "py_func"):
                _add_value(attribute, digest, seen)


def _add_value(value: Any, digest: Any, seen: set[int]) -> None:
    function = getattr(value, "py_func", value)  # a numba dispatcher compiles its Python function
    if isinstance(function, types.FunctionType):
        _add_function(function, digest, seen)
    elif isinstance(value, types.ModuleType):
        digest.update(f"module {value.__name__}".encode())
    elif isinstance(value, (tuple, frozenset)):  # a constant set's order varies with string hashing
        parts = [_value_digest(part, seen) for part in value]
        digest.update(repr(sorted(parts) if isinstance(value, frozenset) else parts).encode())
    elif isinstance(value, np.ndarray):  # numba freezes a global array's contents
        digest.update(f"array {value.dtype} {value.shape}".encode() + value.tobytes())
    elif value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic)):
        digest.update(repr(value).encode())
    else:  # what numba cannot freeze as a constant (a class, a lock): its type, as a repr may hold an address
        digest.update(f"object {type(value).__module__}.{type(value).__qualname__}".encode())


def _value_digest(value: Any, seen: set[int]) -> str:
    digest = hashlib.sha256()
    _add_value(value, digest, seen)
    return digest.hexdigest()


def enable_cache(dispatcher: Any, variant: str) -> bool:
    """Give the numba ``dispatcher`` (one compilation ``variant`` of a loop: "parallel" or "serial") the
    on-disk cache of the module docstring; whether it has one (False: it compiles in every process)."""
    try:
        from numba.core.caching import FunctionCache, NullCache
    except ImportError:
        return False
    if not callable(getattr(FunctionCache, "_index_key", None)) or not isinstance(
        getattr(dispatcher, "_cache", None), NullCache
    ):
        return False

    class FingerprintedCache(FunctionCache):
        """numba's cache, with the variant and the fingerprint of the compiled code in every key."""

        @functools.cached_property
        def fingerprint(self) -> str:
            return fingerprint(dispatcher.py_func)

        def _index_key(self, *arguments: Any) -> tuple:
            return super()._index_key(*arguments), variant, self.fingerprint

    try:
        dispatcher._cache = FingerprintedCache(dispatcher.py_func)
    except RuntimeError:  # numba found no writable cache folder
        return False
    return True
