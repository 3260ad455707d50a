"""Interaction data: reading, sessions, filters, codes, splits, evaluation rows, lanes, and the
preprocessing pipeline (``prepare``)."""
from hrnn_jax.data.errors import (DataError, one_line, bad_rows, check_file)
from hrnn_jax.data.read import (TIME_UNITS, column_names, load_table, read_interactions,
                                check_columns, check_ids, READING, read_log, read_hcrnn)
from hrnn_jax.data.features import (MOVIELENS_MOVIES, NO_GENRES, ItemFeatures, read_item_features,
                                    item_feature_matrix)
from hrnn_jax.data.sessions import (sort_events, sessionize, dedupe_sessions, keep_max_value,
                                    filter_interactions, Encoded, encode, summary)
from hrnn_jax.data.splits import (PROTOCOLS, split_last_session, split_leave_one_out,
                                  split_temporal, USER_COUNTS, split_users, split,
                                  validation_split, restrict_items, combine)
from hrnn_jax.data.rows import (EvalRows, csr_ranges, rows_targets, make_eval_rows)
from hrnn_jax.data.lanes import (FIELDS, EXTRA_FIELDS, Lanes, auto_slots, make_lanes)
from hrnn_jax.data.pipeline import (Prepared, prepare)

__all__ = [
    'DataError', 'EXTRA_FIELDS', 'Encoded', 'EvalRows', 'FIELDS', 'ItemFeatures', 'Lanes',
    'MOVIELENS_MOVIES', 'NO_GENRES', 'PROTOCOLS', 'Prepared', 'READING', 'TIME_UNITS',
    'USER_COUNTS', 'auto_slots', 'bad_rows', 'check_columns', 'check_file', 'check_ids',
    'column_names', 'combine', 'csr_ranges', 'dedupe_sessions', 'encode', 'filter_interactions',
    'item_feature_matrix', 'keep_max_value', 'load_table', 'make_eval_rows', 'make_lanes',
    'one_line', 'prepare', 'read_hcrnn', 'read_interactions', 'read_item_features', 'read_log',
    'restrict_items', 'rows_targets', 'sessionize', 'sort_events', 'split', 'split_last_session',
    'split_leave_one_out', 'split_temporal', 'split_users', 'summary', 'validation_split'
]
