"""Correlation of returns between symbols, maintained incrementally in the segment.

Prices arrive per symbol at any time; returns are sampled for all symbols together
every ``correlation_sample_seconds`` (at the first price update after the interval):
the return of a symbol is ``log(mark / price at the previous sample)``. The estimate
is an exponentially weighted (RiskMetrics-style, zero-mean) covariance with the given
half-life in samples, from which the correlation matrix is derived.

The matrices are double-buffered in the segment: a sample writes the inactive buffer
in full, then the transaction flips the active index, so a reader never sees half a
sample and a writer killed mid-way changes nothing. The correlation rule reads the active
buffer natively (``LedgerKernel.max_correlation``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bot4.errors import SegmentError
from bot4.shm import layout as L

if TYPE_CHECKING:
    from bot4.risk.limits import RiskLimits
    from bot4.shm.mutex import Transaction
    from bot4.shm.segment import Segment

__all__ = ["read_matrix", "take_sample"]


def _buffers(seg: Segment, words: np.ndarray, which: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = seg.layout.max_symbols
    start = seg.layout.correlation_buffer(which)
    floats = words.view(np.float64)
    cov = floats[start : start + n * n].reshape(n, n)
    corr = floats[start + n * n : start + 2 * n * n].reshape(n, n)
    samples = words[start + 2 * n * n : start + 3 * n * n].reshape(n, n)
    return cov, corr, samples


def _symbol_table(seg: Segment, words: np.ndarray) -> np.ndarray:
    lay = seg.layout
    table = words.view(np.float64)[lay.symbols : lay.symbols + lay.max_symbols * L.SYM_WORDS]
    return table.reshape(lay.max_symbols, L.SYM_WORDS)


def take_sample(seg: Segment, tx: Transaction, limits: RiskLimits, now_ns: int) -> None:
    """Sample returns of every symbol with a mark and fold them into the estimate.

    Called under the ledger mutex; writes the inactive buffer directly and adds the
    buffer flip and the new sample prices to ``tx``.
    """
    base = seg.layout.ledger
    r = seg.region
    words = seg.words  # one view for the whole sample: it keeps the mapping while it is used
    if words.size == 0:
        raise SegmentError(seg.name, f"core {seg.name!r} is closed")
    used = r.load(base + L.L_SYMBOLS_USED)
    gen = r.load(base + L.L_CORR_GEN)
    table = _symbol_table(seg, words)[:used]
    marks = table[:, L.Y_MARK].copy()
    previous = table[:, L.Y_SAMPLE_PRICE].copy()
    present = (marks > 0) & (previous > 0)
    returns = np.zeros(used)
    returns[present] = np.log(marks[present] / previous[present])
    cov, corr, samples = _buffers(seg, words, gen & 1)
    new_cov, new_corr, new_samples = _buffers(seg, words, (gen + 1) & 1)
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


def read_matrix(seg: Segment, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the active correlation matrix of the ledger's first ``n`` symbols and of their
    joint sample counts. Call it inside the ledger mutex's consistent read (it only copies:
    a read that takes long is retried, then taken under the mutex)."""
    words = seg.words  # one view while it is read: it keeps the mapping
    if words.size == 0:
        raise SegmentError(seg.name, f"core {seg.name!r} is closed")
    _, corr, samples = _buffers(seg, words, seg.region.load(seg.layout.ledger + L.L_CORR_GEN) & 1)
    return corr[:n, :n].copy(), samples[:n, :n].copy()
