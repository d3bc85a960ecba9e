"""The SQLite journal: one file on one host, the embedded default."""

from ._blobs import blob_dir as blob_dir
from ._blobs import blob_usage as blob_usage
from ._journal import SqliteJournal as SqliteJournal
from ._journal import Synchronous as Synchronous
from ._journal import connect_read_only as connect_read_only
from ._journal import vacuum as vacuum

__all__ = ["SqliteJournal", "Synchronous", "blob_dir", "blob_usage", "connect_read_only", "vacuum"]
