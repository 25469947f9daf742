"""Make kmock's cost per request independent of how many requests and objects it holds.

kmock 0.8 decides whether a reaction applies to a request with
``request in reaction_source``, and a view's ``__contains__`` walks every
request the emulator has ever served, applying the view's criteria to each,
until it meets the new request (which is the last one). Every request thus
costs time in proportion to the emulator's history: a GET took 5.6 ms on a
fresh emulator and grew with every request after, which made the emulator,
not the operator, what the operator benchmarks measured.

``speed_up_matching()`` answers the same question structurally for the views
the emulator's own reactions are built of: a request is in a root if it is one
of its requests (searched newest first), in a ``Filter`` if it is in the
filter's source and meets its criteria, and in a pass-through view
(``Priority``) if it is in its source. Every other view (slices, groups,
exclusions, reactions) keeps kmock's own answer, so the semantics are those of
kmock's ``__iter__`` and only the cost changes. A request that names one
object (a GET, a PATCH, a DELETE) finds it with one dict lookup, not a scan of
the whole store; lists and watches keep the scan.

It reaches into kmock 0.8's internals, which is why pyproject.toml keeps kmock
below 0.9; tests/operator/test_emulator.py compares its answers with kmock's.
"""

from __future__ import annotations

from typing import Any

from kmock._internal import dsl, k8s, references, rendering

_original_contains = dsl.View.__contains__
_original_get_objects = k8s.KubernetesEmulator._KubernetesEmulator__get_objs  # type: ignore[attr-defined]


def _contains(view: dsl.View, item: Any) -> bool:
    if not isinstance(item, rendering.Request):
        return bool(_original_contains(view, item))
    found = _contains_request(view, item)
    return _original_contains(view, item) if found is None else found


def _contains_request(view: dsl.View, request: rendering.Request) -> bool | None:
    """Whether ``request`` is among ``view``'s requests; None when only a walk can tell."""
    kind = type(view)
    if kind is dsl.Filter:
        inner = _contains_request(view._source, request)  # type: ignore[attr-defined]
        if inner is None:
            return None
        return inner and bool(view.criteria(request))  # type: ignore[attr-defined]
    if kind is dsl.Priority:
        return _contains_request(view._source, request)  # type: ignore[attr-defined]
    if isinstance(view, dsl.Root) and type(view).__iter__ is dsl.Root.__iter__:
        return any(seen is request for seen in reversed(view._requests))
    return None


def _get_objects(
    emulator: k8s.KubernetesEmulator, request: rendering.Request, strict: bool
) -> list[Any]:
    """The stored objects a request addresses; one dict lookup when it names one object."""
    if strict and request.name is not None and type(request.resource) is references.resource:
        key = (request.resource, request.namespace, request.name)
        found = emulator.objects._objects.get(key)  # type: ignore[attr-defined]
        return [] if found is None else [found]
    return list(_original_get_objects(emulator, request, strict))


def speed_up_matching() -> None:
    dsl.View.__contains__ = _contains  # type: ignore[method-assign]
    k8s.KubernetesEmulator._KubernetesEmulator__get_objs = _get_objects  # type: ignore[attr-defined]
