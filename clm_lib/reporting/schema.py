"""How a report's dataclasses describe themselves where a REST route returns them as its ``response_model``.

A dataclass sets ``__pydantic_config__ = DOCUMENTED``: the docstring under each field becomes that field's
description in the OpenAPI document, so a shape and its documentation are written once, next to the code that
fills it. A property the API returns too is marked ``@computed_field`` (read-only in the document).
"""

from __future__ import annotations

from pydantic import ConfigDict

DOCUMENTED = ConfigDict(use_attribute_docstrings=True, json_schema_serialization_defaults_required=True)
"""A field with a default is still always in a response: the document says so (``required``)."""
