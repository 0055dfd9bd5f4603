-- Seed of the rails example's cache database (Solid Cache's table). Deterministic.
PRAGMA journal_mode = WAL;
CREATE TABLE solid_cache_entries (id INTEGER PRIMARY KEY, key BLOB NOT NULL, value BLOB NOT NULL, created_at TEXT NOT NULL,
                                  key_hash INTEGER NOT NULL);
CREATE UNIQUE INDEX index_solid_cache_entries_on_key_hash ON solid_cache_entries(key_hash);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
INSERT INTO solid_cache_entries SELECT i, CAST('views/products/' || i AS BLOB), randomblob(0) || zeroblob(200), '2026-03-01 00:00:00', i * 7919 FROM n;
