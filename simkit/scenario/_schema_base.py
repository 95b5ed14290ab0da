"""What every scenario table shares: number types, the strict base model, tags."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Fraction",
    "NonNegFloat",
    "PosFloat",
    "PosInt",
    "Probability",
    "Table",
    "default_tag",
]

PosInt = Annotated[int, Field(gt=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


class Table(BaseModel):
    """Base of every table: unknown keys, loose types and non-finite numbers are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


def default_tag(value: Any, key: str, default: str) -> Any:
    """Fill in a tagged union's tag when a table leaves it out."""
    if isinstance(value, dict) and key not in value:
        return {key: default, **value}
    return value
