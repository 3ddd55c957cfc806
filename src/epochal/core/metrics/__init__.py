"""Metrics: the math (:mod:`.functional`), Poutyne's metric objects (:mod:`.base`,
:mod:`.accuracy`, :mod:`.fscores`), what the loop uses (:mod:`.resolved`), names
(:mod:`.registry`) and resolution (:mod:`.resolve`).

Pure: imports torch, attrs and the standard library only, and does no I/O; the mutable
registry of user names lives in :mod:`epochal.metrics`.
"""

from epochal.core.metrics.accuracy import (
    Accuracy,
    BinaryAccuracy,
    ReducedBatchMetric,
    TopKAccuracy,
)
from epochal.core.metrics.base import DecomposableMetric, Metric, batch_size_of
from epochal.core.metrics.fscores import (
    F1,
    BinaryF1,
    BinaryPrecision,
    BinaryRecall,
    FBeta,
    Precision,
    Recall,
)
from epochal.core.metrics.functional import (
    acc,
    accuracy,
    bin_acc,
    binary_accuracy,
    top1,
    topk,
    topk_accuracy,
)
from epochal.core.metrics.registry import (
    BATCH_METRIC_NAMES,
    BUILTIN_REGISTRY,
    EPOCH_METRIC_NAMES,
    LOSS_NAMES,
    MetricRegistry,
    clean_metric_class_name,
    clean_metric_func_name,
    resolve_loss,
)
from epochal.core.metrics.resolve import (
    ResolvedMetrics,
    resolve_batch_metrics,
    resolve_epoch_metrics,
    resolve_metrics,
)
from epochal.core.metrics.resolved import (
    BatchMetric,
    EpochMetricState,
    camel_to_snake,
    check_unique_names,
    rename_doubles,
)

__all__ = [
    "BATCH_METRIC_NAMES",
    "BUILTIN_REGISTRY",
    "EPOCH_METRIC_NAMES",
    "F1",
    "LOSS_NAMES",
    "Accuracy",
    "BatchMetric",
    "BinaryAccuracy",
    "BinaryF1",
    "BinaryPrecision",
    "BinaryRecall",
    "DecomposableMetric",
    "EpochMetricState",
    "FBeta",
    "Metric",
    "MetricRegistry",
    "Precision",
    "Recall",
    "ReducedBatchMetric",
    "ResolvedMetrics",
    "TopKAccuracy",
    "acc",
    "accuracy",
    "batch_size_of",
    "bin_acc",
    "binary_accuracy",
    "camel_to_snake",
    "check_unique_names",
    "clean_metric_class_name",
    "clean_metric_func_name",
    "rename_doubles",
    "resolve_batch_metrics",
    "resolve_epoch_metrics",
    "resolve_loss",
    "resolve_metrics",
    "top1",
    "topk",
    "topk_accuracy",
]
