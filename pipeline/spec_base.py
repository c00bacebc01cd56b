"""What every part of a job spec is built from: strict models, a reference to a small side corpus, an operator's parameters."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model


class Strict(BaseModel):
    """Unknown fields are errors and types are strict: "100" is not a number, true is not 1."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class CorpusRef(Strict):
    """A small side corpus (reference or target documents), read on the driver."""

    paths: list[str] = Field(description="Files, directories or globs of Parquet or JSONL (local or pyarrow URI).")
    format: Literal["auto", "parquet", "jsonl"] = Field("auto", description="As input.format.")
    text_column: str = Field("text", description="Column or JSON key holding the text.")
    max_docs: int = Field(20_000, gt=0, description="At most this many documents are read (in file order).")


class OperatorParams(Strict):
    """A spec section that is an operator's parameter dataclass: `build()` makes the dataclass from it."""

    operator: ClassVar[type]

    def build(self) -> Any:
        return self.operator(**{name: getattr(self, name) for name in type(self).model_fields})


def params_model(operator: type, name: str) -> type[OperatorParams]:
    """The spec model of an operator's parameter dataclass: its fields, defaults and the bounds and description
    in each field's metadata, so the two never repeat each other field by field."""
    hints = typing.get_type_hints(operator)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(operator):
        meta = dict(f.metadata)
        default = {"default_factory": f.default_factory} if f.default is dataclasses.MISSING else {"default": f.default}
        fields[f.name] = (hints[f.name], Field(**default, **meta))
    model = create_model(name, __base__=OperatorParams, __doc__=operator.__doc__, **fields)
    model.operator = operator
    return model
