"""Correlation of returns between symbols, maintained incrementally in the segment.

Prices arrive per symbol at any time; returns are sampled for all symbols together
every ``correlation_sample_seconds`` (at the first price update after the interval):
the return of a symbol is ``log(mark / price at the previous sample)``. The estimate
is an exponentially weighted (RiskMetrics-style, zero-mean) covariance with the given
half-life in samples, from which the correlation matrix is derived.

The matrices are double-buffered in the segment: a sample writes the inactive buffer
in full, then the transaction flips the active index, so a reader never sees half a
sample and a writer killed mid-way changes nothing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from bot4.shm import layout as L

if TYPE_CHECKING:
    from bot4.risk.limits import RiskLimits
    from bot4.shm.mutex import Transaction
    from bot4.shm.segment import Segment

__all__ = ["CorrelationView", "take_sample"]


def _buffers(seg: Segment, which: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = seg.layout.max_symbols
    start = seg.layout.correlation_buffer(which)
    cov = seg.floats[start : start + n * n].reshape(n, n)
    corr = seg.floats[start + n * n : start + 2 * n * n].reshape(n, n)
    samples = seg.words[start + 2 * n * n : start + 3 * n * n].reshape(n, n)
    return cov, corr, samples


def _symbol_table(seg: Segment) -> np.ndarray:
    lay = seg.layout
    return seg.floats[lay.symbols : lay.symbols + lay.max_symbols * L.SYM_WORDS].reshape(lay.max_symbols, L.SYM_WORDS)


def take_sample(seg: Segment, tx: Transaction, limits: RiskLimits, now_ns: int) -> None:
    """Sample returns of every symbol with a mark and fold them into the estimate.

    Called under the ledger mutex; writes the inactive buffer directly and adds the
    buffer flip and the new sample prices to ``tx``.
    """
    base = seg.layout.ledger
    r = seg.region
    used = r.load(base + L.L_SYMBOLS_USED)
    gen = r.load(base + L.L_CORR_GEN)
    table = _symbol_table(seg)[:used]
    marks = table[:, L.Y_MARK].copy()
    previous = table[:, L.Y_SAMPLE_PRICE].copy()
    present = (marks > 0) & (previous > 0)
    returns = np.zeros(used)
    returns[present] = np.log(marks[present] / previous[present])
    cov, corr, samples = _buffers(seg, gen & 1)
    new_cov, new_corr, new_samples = _buffers(seg, (gen + 1) & 1)
    lam = 0.5 ** (1.0 / limits.correlation_half_life)
    joint = np.outer(present, present)
    block = np.s_[:used, :used]
    new_cov[...] = cov
    new_samples[...] = samples
    new_cov[block] = np.where(joint, lam * cov[block] + (1 - lam) * np.outer(returns, returns), cov[block])
    new_samples[block] = samples[block] + joint
    var = np.sqrt(np.clip(np.diag(new_cov)[:used], 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        c = new_cov[block] / np.outer(var, var)
    new_corr[...] = 0.0
    new_corr[block] = np.nan_to_num(np.clip(c, -1.0, 1.0), nan=0.0)
    for i in np.flatnonzero(marks > 0):
        tx.set(seg.layout.symbol(int(i)) + L.Y_SAMPLE_PRICE, float(marks[i]))
    tx.set(base + L.L_CORR_SAMPLES, r.load(base + L.L_CORR_SAMPLES) + 1)
    tx.set(base + L.L_LAST_SAMPLE_NS, now_ns)
    tx.set(base + L.L_CORR_GEN, gen + 1)


class CorrelationView:
    """Per-process cache: for each symbol, its highest correlation with a held symbol.

    Recomputed only when the holdings (which symbols are held long or short), the
    correlation estimate or the limits change, so a check reads one cached number.
    """

    def __init__(self, segment: Segment) -> None:
        self._seg = segment
        self._gens = segment.layout.ledger + L.L_HOLD_GEN
        self._key: tuple[int, int, int] | None = None
        self._version = -1
        self._min_samples = -1
        self._long: list[tuple[float, int | None]] = []
        self._short: list[tuple[float, int | None]] = []

    def max_for(self, version: int, min_samples: int, index: int, buying: bool) -> tuple[float, int | None]:
        """(max correlation, other symbol index) over symbols held in the order's direction.

        ``version`` is the ledger version the caller read at; holdings and correlation
        change only in ledger transactions, so an unchanged version needs no re-check.
        """
        if version != self._version or min_samples != self._min_samples:
            hold_gen, corr_gen = self._seg.region.load_range(self._gens, 2)
            key = (hold_gen, corr_gen, min_samples)
            if key != self._key:
                self._recompute(key)
            self._version, self._min_samples = version, min_samples
        table = self._long if buying else self._short
        return table[index] if index < len(table) else (-math.inf, None)

    def _recompute(self, key: tuple[int, int, int]) -> None:
        min_samples = key[2]
        seg = self._seg
        used = seg.region.load(seg.layout.ledger + L.L_SYMBOLS_USED)
        table = _symbol_table(seg)[:used]
        position = table[:, L.Y_POSITION]
        held_long = (position > 0) | (table[:, L.Y_BUY_QTY] > 0)
        held_short = (position < 0) | (table[:, L.Y_SELL_QTY] > 0)
        _, corr, samples = _buffers(seg, key[1] & 1)
        c = np.where(samples[:used, :used] >= min_samples, corr[:used, :used], -np.inf)
        np.fill_diagonal(c, -np.inf)
        self._long = _row_max(c, held_long)
        self._short = _row_max(c, held_short)
        self._key = key


def _row_max(c: np.ndarray, held: np.ndarray) -> list[tuple[float, int | None]]:
    if c.size == 0:
        return []
    masked = np.where(held[None, :], c, -np.inf)
    best = masked.argmax(axis=1)
    values = masked[np.arange(len(best)), best]
    return [(float(v), int(b) if math.isfinite(v) else None) for v, b in zip(values, best)]
