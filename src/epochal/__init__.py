"""epochal: train PyTorch networks in a few lines, the way Poutyne does.

The public names below load lazily, so ``import epochal.core`` stays free of the adapters'
dependencies (fsspec, structlog, tqdm, torchvision).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # shell
    "Model": "epochal.model",
    "ModelBundle": "epochal.bundle",
    "set_seeds": "epochal.seeding",
    "Callback": "epochal.callbacks.base",
    "CallbackList": "epochal.callbacks.base",
    "ModelCheckpoint": "epochal.callbacks.checkpoint",
    "OptimizerCheckpoint": "epochal.callbacks.checkpoint",
    "LRSchedulerCheckpoint": "epochal.callbacks.checkpoint",
    "RandomStatesCheckpoint": "epochal.callbacks.checkpoint",
    "PeriodicSaveCallback": "epochal.callbacks.checkpoint",
    "BestModelRestore": "epochal.callbacks.checkpoint",
    "get_random_states": "epochal.callbacks.checkpoint",
    "set_random_states": "epochal.callbacks.checkpoint",
    "TorchLRScheduler": "epochal.callbacks.lr_scheduler",
    "ReduceLROnPlateau": "epochal.callbacks.lr_scheduler",
    "get_scheduler": "epochal.callbacks.lr_scheduler",
    "LambdaLR": "epochal.callbacks.lr_scheduler",
    "MultiplicativeLR": "epochal.callbacks.lr_scheduler",
    "StepLR": "epochal.callbacks.lr_scheduler",
    "MultiStepLR": "epochal.callbacks.lr_scheduler",
    "ConstantLR": "epochal.callbacks.lr_scheduler",
    "LinearLR": "epochal.callbacks.lr_scheduler",
    "ExponentialLR": "epochal.callbacks.lr_scheduler",
    "SequentialLR": "epochal.callbacks.lr_scheduler",
    "PolynomialLR": "epochal.callbacks.lr_scheduler",
    "CosineAnnealingLR": "epochal.callbacks.lr_scheduler",
    "ChainedScheduler": "epochal.callbacks.lr_scheduler",
    "CyclicLR": "epochal.callbacks.lr_scheduler",
    "OneCycleLR": "epochal.callbacks.lr_scheduler",
    "CosineAnnealingWarmRestarts": "epochal.callbacks.lr_scheduler",
    "ClipNorm": "epochal.callbacks.clip",
    "ClipValue": "epochal.callbacks.clip",
    "LambdaCallback": "epochal.callbacks.utility",
    "DelayCallback": "epochal.callbacks.utility",
    "CSVLogger": "epochal.callbacks.logging",
    "TensorBoardLogger": "epochal.callbacks.logging",
    "StructlogLogger": "epochal.callbacks.logging",
    "EarlyStopping": "epochal.callbacks.stopping",
    "TerminateOnNaN": "epochal.callbacks.stopping",
    # exceptions
    "EpochalError": "epochal.exceptions",
    "ConfigurationError": "epochal.exceptions",
    "MonitorKeyError": "epochal.exceptions",
    "EmptyLoaderError": "epochal.exceptions",
    "ShapeMismatchError": "epochal.exceptions",
    "CheckpointError": "epochal.exceptions",
    "ResumeError": "epochal.exceptions",
    # core values users meet
    "PassPhase": "epochal.core.records",
    "StepRecord": "epochal.core.records",
    "EpochRecord": "epochal.core.records",
    "StopTraining": "epochal.core.directives",
    "RecordBus": "epochal.bus",
    "Metric": "epochal.core.metrics",
    "DecomposableMetric": "epochal.core.metrics",
    "Accuracy": "epochal.core.metrics",
    "BinaryAccuracy": "epochal.core.metrics",
    "TopKAccuracy": "epochal.core.metrics",
    "FBeta": "epochal.core.metrics",
    "F1": "epochal.core.metrics",
    "Precision": "epochal.core.metrics",
    "Recall": "epochal.core.metrics",
    "BinaryF1": "epochal.core.metrics",
    "BinaryPrecision": "epochal.core.metrics",
    "BinaryRecall": "epochal.core.metrics",
    "acc": "epochal.core.metrics",
    "bin_acc": "epochal.core.metrics",
    "topk": "epochal.core.metrics",
    "top1": "epochal.core.metrics",
    "clean_metric_func_name": "epochal.core.metrics",
    "clean_metric_class_name": "epochal.core.metrics",
    "rename_doubles": "epochal.core.metrics",
    "camel_to_snake": "epochal.core.metrics",
    "SKLearnMetrics": "epochal.metrics",
    "register_metric_func": "epochal.metrics",
    "register_metric_class": "epochal.metrics",
    "unregister_metric_class": "epochal.metrics",
    "do_register_metric_func": "epochal.metrics",
    "do_register_metric_class": "epochal.metrics",
    "get_metric": "epochal.metrics",
    "IndexedArgumentMetric": "epochal.metrics",
    "get_names_of_metric": "epochal.metrics",
    "flatten_metric_names": "epochal.metrics",
    "convert_decomposable_metric_to_object": "epochal.metrics",
    "PeriodicSaveLambda": "epochal.callbacks.periodic",
    "StateCheckpoint": "epochal.callbacks.checkpoint",
    "AtomicCSVLogger": "epochal.callbacks.csv_logger",
    "Logger": "epochal.callbacks.logger",
    "GradientTracker": "epochal.callbacks.gradient_tracker",
    "WeightsGradientsStatsTracker": "epochal.callbacks.gradient_tracker",
    "TensorBoardGradientTracker": "epochal.callbacks.gradient_tracker",
    "GradientLoggerBase": "epochal.callbacks.gradient_logger",
    "MemoryGradientLogger": "epochal.callbacks.gradient_logger",
    "CSVGradientLogger": "epochal.callbacks.gradient_logger",
    "AtomicCSVGradientLogger": "epochal.callbacks.gradient_logger",
    "TensorBoardGradientLogger": "epochal.callbacks.gradient_logger",
    "NotificationCallback": "epochal.callbacks.notification",
    "Notificator": "epochal.callbacks.notification",
    "MLFlowLogger": "epochal.callbacks.mlflow_logger",
    "WandBLogger": "epochal.callbacks.wandb_logger",
    "ProgressionCallback": "epochal.callbacks.progress",
    "EpochProgressionCallback": "epochal.callbacks.progress",
    "Experiment": "epochal.experiment",
    "StorageError": "epochal.exceptions",
    # Poutyne's utilities, policies, plotting and layers
    "torch_to_numpy": "epochal.utils",
    "numpy_to_torch": "epochal.utils",
    "torch_apply": "epochal.utils",
    "torch_to": "epochal.utils",
    "TensorDataset": "epochal.utils",
    "get_batch_size": "epochal.utils",
    "save_random_states": "epochal.utils",
    "load_random_states": "epochal.utils",
    "is_in_jupyter_notebook": "epochal.utils",
    "set_deterministic_debug_mode": "epochal.utils",
    "warning_settings": "epochal.utils",
    "Phase": "epochal.policies",
    "OptimizerPolicy": "epochal.policies",
    "linspace": "epochal.policies",
    "cosinespace": "epochal.policies",
    "one_cycle_phases": "epochal.policies",
    "sgdr_phases": "epochal.policies",
    "plot_history": "epochal.plotting",
    "plot_metric": "epochal.plotting",
    "Lambda": "epochal.layers",
    "get_optimizer": "epochal.optimizers",
    "BatchMetric": "epochal.metrics",
    "ProgressBar": "epochal.callbacks.progress_bar",
    "ColorProgress": "epochal.callbacks.color_progress",
}

__all__ = sorted(_EXPORTS)


def _register(module: str, names: list[str]) -> None:
    for name in names:
        _EXPORTS[name] = module
        if name not in __all__:
            __all__.append(name)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'epochal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from epochal.bundle import ModelBundle as ModelBundle
    from epochal.bus import RecordBus as RecordBus
    from epochal.core.directives import StopTraining as StopTraining
    from epochal.core.records import EpochRecord as EpochRecord
    from epochal.core.records import PassPhase as PassPhase
    from epochal.core.records import StepRecord as StepRecord
    from epochal.model import Model as Model
    from epochal.seeding import set_seeds as set_seeds
