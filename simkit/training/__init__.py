"""The training core: models, data, optimizers, aggregation, metrics, the manager.

The same objects serve virtual-time simulations, real-time runs and TCP
deployments: nothing here reads a clock (unless given one), sleeps, touches a
global random generator or imports simkit's runtime. See docs/training.md.
"""

from typing import TYPE_CHECKING, Any

from simkit.training._aggregate import (
    Aggregate,
    AuxVar,
    MeanState,
    MetricState,
    ModelUpdates,
    sum_in_order,
)
from simkit.training._aggregators import (
    Aggregator,
    Mean,
    Median,
    TrimmedMean,
    WeightedMean,
    Weighting,
    weight_for,
)
from simkit.training._data import (
    DataCache,
    Dataset,
    FileArray,
    SyntheticClient,
    dirichlet,
    evenly_distribute_count_into_bins,
    iid,
    load_digits,
    load_npz,
    quantity_skew,
    synthetic,
)
from simkit.training._manager import CostModel, TrainingManager
from simkit.training._messages import (
    Effort,
    EvalInstructions,
    EvalResult,
    TrainFailure,
    TrainInstructions,
    TrainResult,
)
from simkit.training._metrics import (
    Accuracy,
    EarlyStopping,
    Loss,
    MeanSquaredError,
    Metric,
    ScalarMeanTracker,
    aggregate_metrics,
    default_metrics,
    metric_results,
)
from simkit.training._model import LinearRegression, LogisticRegression, Model, Task
from simkit.training._modules import (
    AdagradModule,
    AdamModule,
    FedProxRegularizer,
    MomentumModule,
    OptiModule,
    Regularizer,
    ScaffoldAuxVar,
    ScaffoldClientModule,
    ScaffoldServerAuxVar,
    ScaffoldServerModule,
    YogiModule,
)
from simkit.training._optimizer import (
    SGD,
    Adam,
    FedAdagrad,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedYogi,
    LinearDecay,
    MultiLinearDecay,
    Optimizer,
    Schedule,
)
from simkit.training._partition import pathological
from simkit.training._plan import outside_round, planned_evaluation, planned_training
from simkit.training._pool import ModelPool
from simkit.training._serialize import (
    load_checkpoint,
    load_state,
    register_aggregate,
    register_training_codecs,
    save_checkpoint,
    save_state,
)
from simkit.training._weights import Array, SharedWeights, Weights, same_bits

if TYPE_CHECKING:
    from simkit.training._torch import TorchModel

__all__ = [
    "SGD",
    "Accuracy",
    "AdagradModule",
    "Adam",
    "AdamModule",
    "Aggregate",
    "Aggregator",
    "Array",
    "AuxVar",
    "CostModel",
    "DataCache",
    "Dataset",
    "EarlyStopping",
    "Effort",
    "EvalInstructions",
    "EvalResult",
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedProxRegularizer",
    "FedYogi",
    "FileArray",
    "LinearDecay",
    "LinearRegression",
    "LogisticRegression",
    "Loss",
    "Mean",
    "MeanSquaredError",
    "MeanState",
    "Median",
    "Metric",
    "MetricState",
    "Model",
    "ModelPool",
    "ModelUpdates",
    "MomentumModule",
    "MultiLinearDecay",
    "OptiModule",
    "Optimizer",
    "Regularizer",
    "ScaffoldAuxVar",
    "ScaffoldClientModule",
    "ScaffoldServerAuxVar",
    "ScaffoldServerModule",
    "ScalarMeanTracker",
    "Schedule",
    "SharedWeights",
    "SyntheticClient",
    "Task",
    "TorchModel",
    "TrainFailure",
    "TrainInstructions",
    "TrainResult",
    "TrainingManager",
    "TrimmedMean",
    "WeightedMean",
    "Weighting",
    "Weights",
    "YogiModule",
    "aggregate_metrics",
    "default_metrics",
    "dirichlet",
    "evenly_distribute_count_into_bins",
    "iid",
    "load_checkpoint",
    "load_digits",
    "load_npz",
    "load_state",
    "metric_results",
    "outside_round",
    "pathological",
    "planned_evaluation",
    "planned_training",
    "quantity_skew",
    "register_aggregate",
    "register_training_codecs",
    "same_bits",
    "save_checkpoint",
    "save_state",
    "sum_in_order",
    "synthetic",
    "weight_for",
]


def __getattr__(name: str) -> Any:
    # torch takes a second to import: load it only when TorchModel is used.
    if name == "TorchModel":
        from simkit.training._torch import TorchModel

        return TorchModel
    raise AttributeError(f"module 'simkit.training' has no attribute {name!r}")


register_training_codecs()
