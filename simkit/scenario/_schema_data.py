"""The ``[data]`` and ``[model]`` tables: built-in sources and models, and the user's own.

A ``source`` or ``kind`` written ``package.module:function`` names the
user's loader or model factory (validated here for its form; imported and
called when the scenario is built, see :mod:`simkit.scenario._user`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, model_validator

from simkit.scenario._schema_base import (
    Fraction,
    NonNegFloat,
    PosFloat,
    PosInt,
    Table,
)

__all__ = [
    "OBJECT_PATH",
    "USER_TAG",
    "DataConfig",
    "DigitsData",
    "LinearModelConfig",
    "LogisticModelConfig",
    "MLPModelConfig",
    "ModelConfig",
    "NpzData",
    "PartitionConfig",
    "SyntheticData",
    "UserData",
    "UserModelConfig",
]

OBJECT_PATH = r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$"
"""``package.module:function``."""

USER_TAG = "package.module:function"
"""The union tag of the user's variants (how errors name them)."""


def _user_tag(value: Any, key: str) -> Any:
    """The variant a table names: its ``key``, or ``USER_TAG`` for ``a.b:c``."""
    tag = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
    return USER_TAG if isinstance(tag, str) and ":" in tag else tag


# ----------------------------------------------------------------------------- data


class PartitionConfig(Table):
    """How a pooled data set is split among clients."""

    kind: Literal["iid", "dirichlet", "quantity_skew", "pathological", "natural"] = Field(
        default="iid",
        description="iid, dirichlet (label skew), quantity_skew (size skew), pathological "
        "(classes_per_client classes each) or natural (by a column of client ids).",
    )
    alpha: PosFloat = Field(
        default=0.5, description="Dirichlet concentration (dirichlet, quantity_skew)."
    )
    min_size: Annotated[int, Field(ge=0)] = Field(
        default=1, description="Minimum samples per client."
    )
    classes_per_client: PosInt = Field(
        default=2, description="Classes each client holds (pathological)."
    )
    column: str | None = Field(
        default=None,
        min_length=1,
        description="natural: the .npz array holding each row's client id.",
    )

    @model_validator(mode="after")
    def _natural_has_a_column(self) -> PartitionConfig:
        if self.kind == "natural" and self.column is None:
            raise ValueError("kind = 'natural' needs column, the array of client ids")
        return self


class _DataCommon(Table):
    test_fraction: Fraction = Field(
        default=0.2, description="Share of the data held out as the server's test set (0: none)."
    )
    valid_fraction: Fraction = Field(
        default=0.0, description="Share of each client's shard kept as its validation set."
    )


class SyntheticData(_DataCommon):
    """Synthetic(alpha, beta) of Li et al. 2020 (FedProx): one generator per client."""

    source: Literal["synthetic"] = "synthetic"
    alpha: NonNegFloat = Field(default=1.0, description="Model heterogeneity.")
    beta: NonNegFloat = Field(default=1.0, description="Input heterogeneity.")
    samples: PosInt | None = Field(
        default=None, description="Samples per client (default: the paper's power law)."
    )
    dim: PosInt = Field(default=60, description="Input dimension.")
    classes: Annotated[int, Field(ge=2)] = Field(default=10, description="Number of classes.")
    iid: bool = Field(default=False, description="Synthetic IID instead.")


class DigitsData(_DataCommon):
    """The 8x8 digits bundled with scikit-learn (extra ``simkit[digits]``)."""

    source: Literal["digits"] = "digits"
    partition: PartitionConfig = PartitionConfig()


class NpzData(_DataCommon):
    """Arrays from a ``.npz`` file (``path`` relative to the scenario file)."""

    source: Literal["npz"] = "npz"
    path: str = Field(min_length=1, description="The .npz file.")
    x_key: str = Field(default="x", description="Name of the inputs array.")
    y_key: str = Field(default="y", description="Name of the labels array.")
    partition: PartitionConfig = PartitionConfig()


class UserData(_DataCommon):
    """A pooled data set from the user's loader, ``source = "package.module:function"``.

    The loader is called with ``options`` as keyword arguments (and ``seed``, a
    :class:`~simkit.rng.SeedTree`, if it takes one) and returns a
    :class:`~simkit.training.Dataset` or an ``(x, y)`` pair of arrays.
    """

    source: str = Field(pattern=OBJECT_PATH, description="The loader, package.module:function.")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")
    partition: PartitionConfig = PartitionConfig()


def _data_tag(value: Any) -> Any:
    return _user_tag(value, "source")


DataConfig = Annotated[
    Annotated[SyntheticData, Tag("synthetic")]
    | Annotated[DigitsData, Tag("digits")]
    | Annotated[NpzData, Tag("npz")]
    | Annotated[UserData, Tag(USER_TAG)],
    Discriminator(_data_tag),
]


# ----------------------------------------------------------------------------- model


class LogisticModelConfig(Table):
    """Multinomial logistic regression (numpy)."""

    kind: Literal["logistic"] = "logistic"
    init: Literal["zeros", "normal"] = Field(default="zeros", description="Initial weights.")


class LinearModelConfig(Table):
    """Linear regression (numpy, mean squared error)."""

    kind: Literal["linear"] = "linear"


class MLPModelConfig(Table):
    """A torch multi-layer perceptron: Linear layers with an activation between."""

    kind: Literal["mlp"] = "mlp"
    hidden: list[PosInt] = Field(default_factory=lambda: [64], description="Hidden widths.")
    activation: Literal["relu", "tanh", "sigmoid", "gelu", "leaky_relu", "elu"] = "relu"
    dropout: Fraction = Field(default=0.0, description="Dropout after each hidden layer.")
    num_threads: Annotated[int, Field(gt=0, le=256)] | None = Field(
        default=1, description="torch intra-op threads during training (bitwise across machines)."
    )


class UserModelConfig(Table):
    """The user's model, ``kind = "package.module:function"``.

    The function is called with ``options`` as keyword arguments, plus those of
    ``input_shape`` (a sample's shape), ``n_features``, ``n_classes`` and
    ``seed`` (a :class:`~simkit.rng.SeedTree`) that it takes, and returns a
    ``torch.nn.Module`` (trained with ``loss``, its parameters re-initialized
    from the seed tree) or a :class:`~simkit.training.Model`.
    """

    kind: str = Field(pattern=OBJECT_PATH, description="The factory, package.module:function.")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments.")
    loss: Literal["cross_entropy", "mse"] = Field(
        default="cross_entropy", description="Loss of a torch module (classification or not)."
    )
    num_threads: Annotated[int, Field(gt=0, le=256)] | None = Field(
        default=1, description="torch intra-op threads during training (torch modules)."
    )


def _model_tag(value: Any) -> Any:
    return _user_tag(value, "kind")


ModelConfig = Annotated[
    Annotated[LogisticModelConfig, Tag("logistic")]
    | Annotated[LinearModelConfig, Tag("linear")]
    | Annotated[MLPModelConfig, Tag("mlp")]
    | Annotated[UserModelConfig, Tag(USER_TAG)],
    Discriminator(_model_tag),
]
