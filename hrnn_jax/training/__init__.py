"""Training: the train step (``step``), ``fit`` (``loop``), losses and optimisers."""
from hrnn_jax.training.loop import (
                                    STEPS_PER_CALL,
                                    FitResult,
                                    FitState,
                                    NonFiniteLossError,
                                    RowUpdateChoice,
                                    check_finite_loss,
                                    fit,
                                    row_updates_for,
                                    train_step_for,
)
from hrnn_jax.training.step import (
                                    TrainState,
                                    TrainStep,
                                    init_state,
                                    make_train_step,
                                    popularity_cdf,
                                    scan_steps,
)

__all__ = [
    'FitResult', 'FitState', 'NonFiniteLossError', 'RowUpdateChoice', 'STEPS_PER_CALL',
    'TrainState', 'TrainStep', 'check_finite_loss', 'fit', 'init_state', 'make_train_step',
    'popularity_cdf', 'row_updates_for', 'scan_steps', 'train_step_for'
]
