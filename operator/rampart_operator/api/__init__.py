"""The HardenedService API as typed models: parsed and defaulted once, at the edge.

The CRD's schema (crd.py), docs/api.md (reference.py) and the offline checks
(validation.py) are all generated from or defined in these models.
"""

from .resource import HardenedService, openapi_v3_schema, parse_spec
from .spec import HardenedServiceSpec
from .status import HardenedServiceStatus

__all__ = [
    "HardenedService",
    "HardenedServiceSpec",
    "HardenedServiceStatus",
    "openapi_v3_schema",
    "parse_spec",
]
