"""The durable journal: every event that changed the desk, in a database that outlives the host's memory.

``Core.create(name, journal="desk.db")`` rebuilds the desk from the journal (if it holds
anything) and records every event from then on; ``core.journal`` is the :class:`Journal`.
See ``docs/journal.md``.
"""

from bot4.journal.desk import Journal
from bot4.journal.process import RecorderProcess
from bot4.journal.query import Filters, compact
from bot4.journal.recorder import Recorder
from bot4.journal.recovery import AccountState, JournalState, OpenOrder, SymbolState, read_state
from bot4.journal.store import JournalStore

__all__ = [
    "AccountState",
    "Filters",
    "Journal",
    "JournalState",
    "JournalStore",
    "OpenOrder",
    "Recorder",
    "RecorderProcess",
    "SymbolState",
    "compact",
    "read_state",
]
