"""Vector similarity over the index's passages, and fusing rankings.

numpy over a matrix kept in memory: every vector is a unit row, so cosine
similarity is one matrix-vector product. At 100,000 passages of 768
dimensions that is ~300 MB/s of memory traffic, a few milliseconds
(tests/benchmarks/documents.py measures it against sqlite-vec). The matrix is
read from SQLite on first use after the index changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Iterable, Sequence

import numpy as np

RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al. 2009)


class VectorSearch:
    """Nearest passages by cosine similarity.

    Args:
        load: returns (chunk_id, file_id, float32 little-endian bytes) for every vector.
    """

    def __init__(self, load: Callable[[], Iterable[tuple[int, int, bytes]]]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._matrix: np.ndarray | None = None
        self._chunk_ids = np.zeros(0, dtype=np.int64)
        self._file_ids = np.zeros(0, dtype=np.int64)

    def invalidate(self) -> None:
        """Forget the matrix (the index changed); the next search reads it again."""
        with self._lock:
            self._matrix = None

    def count(self) -> int:
        """How many passages have vectors."""
        return len(self._ensure()[1])

    def nearest(self, query: np.ndarray, file_ids: Collection[int], k: int) -> list[tuple[int, float]]:
        """The ``k`` passages of ``file_ids`` most similar to ``query`` (a unit vector), best first."""
        matrix, chunk_ids, owners = self._ensure()
        if not len(chunk_ids) or not file_ids:
            return []
        allowed = np.isin(owners, np.fromiter(file_ids, dtype=np.int64))
        rows = np.flatnonzero(allowed)
        if not len(rows):
            return []
        scores = matrix[rows] @ np.asarray(query, dtype=np.float32) if len(rows) < len(chunk_ids) \
            else matrix @ np.asarray(query, dtype=np.float32)
        top = min(k, len(rows))
        best = np.argpartition(-scores, top - 1)[:top]
        best = best[np.argsort(-scores[best])]
        return [(int(chunk_ids[rows[i]]), float(scores[i])) for i in best]

    def _ensure(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            if self._matrix is None:
                rows = list(self._load())
                if rows:
                    self._matrix = np.vstack([np.frombuffer(r[2], dtype="<f4") for r in rows])
                    self._chunk_ids = np.array([r[0] for r in rows], dtype=np.int64)
                    self._file_ids = np.array([r[1] for r in rows], dtype=np.int64)
                else:
                    self._matrix = np.zeros((0, 0), dtype=np.float32)
                    self._chunk_ids = self._file_ids = np.zeros(0, dtype=np.int64)
            return self._matrix, self._chunk_ids, self._file_ids


def fuse_rankings(rankings: Sequence[Sequence[tuple[int, float]]], *, k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: each id scores the sum of 1 / (k + rank) over the rankings it is in, best first."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, (item, _score) in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])
