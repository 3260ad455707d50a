"""Training: the train step (``step``), ``fit`` (``loop``), losses and optimisers."""
from hrnn_jax.training.step import (TrainState, popularity_cdf, TrainStep, make_train_step,
                                    init_state, scan_steps)
from hrnn_jax.training.loop import (STEPS_PER_CALL, NonFiniteLossError, check_finite_loss,
                                    FitState, FitResult, row_updates_for, train_step_for, fit)

__all__ = [
    'FitResult', 'FitState', 'NonFiniteLossError', 'STEPS_PER_CALL', 'TrainState', 'TrainStep',
    'check_finite_loss', 'fit', 'init_state', 'make_train_step', 'popularity_cdf',
    'row_updates_for', 'scan_steps', 'train_step_for'
]
