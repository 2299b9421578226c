"""What a scorer receives: a trained model's recipe spec, artifacts and parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from pyspark.sql import DataFrame

from batchrec import catalogue
from batchrec.errors import JobError


@dataclass(frozen=True)
class Model:
    """A solution version (or a freshly trained model) as scoring sees it."""

    spec: catalogue.RecipeSpec
    artifacts: Mapping[str, DataFrame]
    params: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, recipe: str, artifacts: Mapping[str, DataFrame],
           params: Optional[Mapping[str, Any]] = None) -> "Model":
        """The model of ``recipe`` (a catalogue name) over ``artifacts``."""
        return cls(catalogue.get(recipe), artifacts, dict(params or {}))

    def artifact(self, name: str) -> DataFrame:
        """``artifacts[name]`` or a JobError naming the missing artifact."""
        return artifact(self.artifacts, name)

    def has(self, name: str) -> bool:
        """Whether the model stores the artifact ``name``."""
        return self.artifacts.get(name) is not None


def artifact(artifacts: Mapping[str, DataFrame], name: str) -> DataFrame:
    """``artifacts[name]`` or a JobError naming the missing artifact."""
    if artifacts.get(name) is None:
        raise JobError(f"solution version has no '{name}' artifact; expected one of its files "
                       f"(present: {sorted(artifacts)})")
    return artifacts[name]
