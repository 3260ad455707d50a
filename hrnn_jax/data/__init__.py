"""Interaction data: reading, sessions, filters, codes, splits, evaluation rows, lanes, and the
preprocessing pipeline (``prepare``)."""
from hrnn_jax.data.errors import DataError, bad_rows, check_file, one_line
from hrnn_jax.data.features import (
                                MOVIELENS_MOVIES,
                                NO_GENRES,
                                ItemFeatures,
                                item_feature_matrix,
                                read_item_features,
)
from hrnn_jax.data.lanes import (
                                EXTRA_FIELDS,
                                FIELDS,
                                LaneGroups,
                                Lanes,
                                auto_slots,
                                group_bounds,
                                lane_groups,
                                make_lanes,
)
from hrnn_jax.data.pipeline import Catalogue, Prepared, prepare
from hrnn_jax.data.read import (
                                READING,
                                TIME_UNITS,
                                LogFormat,
                                TimeUnit,
                                check_columns,
                                check_ids,
                                column_names,
                                load_table,
                                read_hcrnn,
                                read_interactions,
                                read_log,
                                read_steam,
)
from hrnn_jax.data.rows import EvalRows, csr_ranges, make_eval_rows, rows_targets
from hrnn_jax.data.sessions import (
                                Encoded,
                                dedupe_sessions,
                                encode,
                                filter_interactions,
                                keep_max_value,
                                sessionize,
                                sort_events,
                                summary,
)
from hrnn_jax.data.share import Share, read_share
from hrnn_jax.data.splits import (
                                PROTOCOLS,
                                USER_COUNTS,
                                Protocol,
                                combine,
                                restrict_items,
                                split,
                                split_last_session,
                                split_leave_one_out,
                                split_temporal,
                                split_users,
                                validation_split,
)
from hrnn_jax.data.stream import (
    count_users,
    is_encoded,
    preprocess_parquet,
    read_data_config,
    read_encoded,
    read_ids,
    read_info,
    scan_log,
)

__all__ = [
    'Catalogue', 'DataError', 'EXTRA_FIELDS', 'Encoded', 'EvalRows', 'FIELDS', 'ItemFeatures',
    'LaneGroups', 'Lanes', 'LogFormat', 'MOVIELENS_MOVIES', 'NO_GENRES', 'PROTOCOLS', 'Prepared',
    'Protocol', 'READING', 'Share', 'TIME_UNITS', 'TimeUnit', 'USER_COUNTS', 'auto_slots',
    'bad_rows', 'check_columns', 'check_file', 'check_ids', 'column_names', 'combine',
    'csr_ranges', 'dedupe_sessions', 'encode', 'filter_interactions', 'group_bounds',
    'item_feature_matrix', 'keep_max_value', 'lane_groups', 'load_table', 'make_eval_rows',
    'make_lanes', 'one_line', 'prepare', 'read_hcrnn', 'read_interactions', 'read_item_features',
    'read_log', 'read_steam', 'restrict_items', 'rows_targets', 'sessionize', 'sort_events',
    'split', 'split_last_session', 'split_leave_one_out', 'split_temporal', 'split_users',
    'summary', 'validation_split', 'preprocess_parquet', 'read_encoded', 'read_ids', 'read_share',
    'scan_log', 'count_users', 'is_encoded', 'read_data_config', 'read_info',
]
