"""The baselines by name: each name has a builder from the configuration (Quadrana et al.'s POP,
PPOP, Item-KNN; Donkers et al.'s decaying Item-KNN, BPR-MF, sequential MF; Song et al.'s names
S-POP and BPR-MF for two of them; the seed paper's (Shuvo et al.) BPR, FMC and FPMC: BPR-MF of
Rendle et al. 2009 and the factorised Markov chain and factorised personalised Markov chain of
Rendle et al. 2010). ``hrnn-jax compare --models`` reads it beside the neural models' registry
(``hrnn_jax.models.registry``); :func:`register_baseline` adds your own.

The factorisation baselines (``mf``, ``bpr-mf``, ``bpr``, ``seq-mf``, ``fmc``, ``fpmc``) read
``factors``, ``mf_epochs``, ``mf_learning_rate`` of ``config.model`` and ``config.train.seed``;
``seq-mf`` also ``mf_window`` (FMC and FPMC look at the previous item only).

Every baseline has the same two calls::

    model = build_baseline("itemknn", config).fit(train, n_items)
    ranks = rank_chunks(lambda idx: model.score(rows, idx), rows)

``fit(train, n_items)``: ``train`` has columns user, item (1..N), time, session. ``score(rows,
index)`` returns float32 ``[len(index), N+1]`` with column 0 (padding) = -inf.
"""
from __future__ import annotations

from typing import Any, Callable

from hrnn_jax.baselines.factorisation import FMC, FPMC, MF, SeqMF
from hrnn_jax.baselines.knn import DecayItemKNN, ItemKNN
from hrnn_jax.baselines.popularity import PersonalPop, Pop
from hrnn_jax.config import Config

Builder = Callable[[Config], Any]
_BUILDERS: dict[str, Builder] = {}


def register_baseline(name: str, builder: Builder, *, replace: bool = False) -> Builder:
    """Register ``builder(config: Config) -> baseline`` (an object with ``fit`` and ``score``)
    under ``name``; a name that is taken is a ValueError unless ``replace``."""
    if not name or name != name.strip().lower() or " " in name or "," in name:
        raise ValueError(f"a baseline name is lower case without spaces or commas, got {name!r}")
    if name in _BUILDERS and not replace:
        raise ValueError(f"baseline {name!r} is registered already (replace=True to replace it)")
    _BUILDERS[name] = builder
    return builder


def baseline_names() -> tuple[str, ...]:
    """The registered names, in the order of registration."""
    return tuple(_BUILDERS)


def build_baseline(name: str, config: Config = Config()):
    """The baseline registered as ``name``, with the settings of ``config``."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(_BUILDERS)}")
    return _BUILDERS[name](config)


def _mf(config: Config) -> dict:
    m = config.model
    return {"factors": m.factors, "epochs": m.mf_epochs, "learning_rate": m.mf_learning_rate,
            "seed": config.train.seed}


register_baseline("pop", lambda config: Pop())
register_baseline("ppop", lambda config: PersonalPop())
# Song et al.'s S-POP, the most frequent item of the current sequence, is PersonalPop when a
# sequence is a user's history (their setting)
register_baseline("spop", lambda config: PersonalPop())
register_baseline("itemknn", lambda config: ItemKNN(neighbours=config.model.neighbours))
register_baseline("decay-itemknn", lambda config: DecayItemKNN(
    neighbours=config.model.neighbours, decay=config.model.decay))
register_baseline("mf", lambda config: MF(**_mf(config)))
register_baseline("bpr-mf", lambda config: MF(**_mf(config)))  # Song et al.'s name for it
register_baseline("seq-mf", lambda config: SeqMF(**_mf(config), window=config.model.mf_window))
# the seed paper's (Shuvo et al.) baselines: BPR (BPR-MF again), FMC and FPMC of Rendle et al. 2010
register_baseline("bpr", lambda config: MF(**_mf(config)))
register_baseline("fmc", lambda config: FMC(**_mf(config)))
register_baseline("fpmc", lambda config: FPMC(**_mf(config)))
