"""One process's share of an encoded training log: the users of its lane groups, read alone.

    share = data.read_share("out/", groups=8, process=(jax.process_index(), jax.process_count()))
    training.fit(model, share, TrainConfig(lane_groups=8), mesh="data=8")

A ``preprocess_parquet`` output is read by every process of a run. Each one reads two small
per-code tables over the whole training part (events per user code and per item code, streaming
aggregations of one column each), which fix the lane groups' user ranges
(``data.lanes.group_bounds``) and the popularity of the sampled negatives; then it reads only the
events of its own groups' users (``read_encoded`` with a user range: row groups of other users
are skipped). ``fit`` lays those users into their groups' lanes, exchanges the groups' closing
lists (a few integers per step) with the other processes, and places only its own lanes on its
devices. With one process and every group this is the same training as ``fit`` on the whole frame
with ``TrainConfig(lane_groups=groups)``.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import polars as pl

from hrnn_jax.data.errors import DataError, check_file
from hrnn_jax.data.lanes import group_bounds
from hrnn_jax.data.stream import read_encoded


@dataclasses.dataclass(frozen=True)
class Share:
    """The training events of the users of lane groups ``groups`` (a range of ``0..n_groups-1``).

    frame: those events (user, item, time, session), sorted by user then time.
    bounds: ``[n_groups + 1]`` user-code bounds of every group (``data.lanes.group_bounds``).
    item_counts: ``[N + 1]`` training events per item code over the whole part (0 at padding).
    n_items (property): N, the item codes of the encoded log (the models' catalogue).
    """

    frame: pl.DataFrame
    n_groups: int
    groups: range
    bounds: np.ndarray
    item_counts: np.ndarray

    @property
    def n_items(self) -> int:
        return len(self.item_counts) - 1

    @property
    def users(self) -> tuple[int, int]:
        """``(lo, hi)``: the share holds the training events of user codes lo <= user < hi."""
        return int(self.bounds[self.groups.start]), int(self.bounds[self.groups.stop])


def _counts(path: str, col: str, size: int | None = None) -> np.ndarray:
    """Events per code of ``col`` over the whole Parquet file (a streaming aggregation)."""
    per = pl.scan_parquet(path).group_by(col).len().collect(engine="streaming")
    codes = per[col].to_numpy().astype(np.int64)
    n = size if size is not None else (int(codes.max()) + 1 if len(codes) else 0)
    return np.bincount(codes, weights=per["len"].to_numpy(), minlength=n).astype(np.int64)


def read_share(out_dir, groups: int, process: tuple[int, int] = (0, 1)) -> Share:
    """Process ``process = (index, count)``'s share of the ``train`` part of a
    ``preprocess_parquet`` output ``out_dir``, in ``groups`` lane groups (a multiple of the
    process count; process i holds groups ``i * groups / count`` onwards, as many each).

    Raises DataError for a missing file, bad ``groups`` or ``process``."""
    index, count = process
    if count < 1 or not 0 <= index < count:
        raise DataError(f"process must be (index, count) with 0 <= index < count, got {process}")
    if groups < 1 or groups % count:
        raise DataError(f"lane groups ({groups}) must be a positive multiple of the processes "
                        f"({count})")
    out = os.fspath(out_dir)
    path = check_file(os.path.join(out, "train.parquet"), "encoded train part")
    items = pl.scan_parquet(check_file(os.path.join(out, "items.parquet"), "item ids"))
    n_items = int(items.select(pl.len()).collect().item())
    bounds = group_bounds(_counts(path, "user"), groups)
    per = groups // count
    mine = range(index * per, (index + 1) * per)
    frame = read_encoded(out, "train", users=(int(bounds[mine.start]), int(bounds[mine.stop])))
    item_counts = _counts(path, "item", n_items + 1)
    item_counts[0] = 0
    return Share(frame, groups, mine, bounds, item_counts)
