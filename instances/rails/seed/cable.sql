-- Seed of the rails example's cable database (Solid Cable's table). Deterministic.
PRAGMA journal_mode = WAL;
CREATE TABLE solid_cable_messages (id INTEGER PRIMARY KEY, channel BLOB NOT NULL, payload BLOB NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX index_solid_cable_messages_on_created_at ON solid_cable_messages(created_at);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
INSERT INTO solid_cable_messages SELECT i, CAST('orders:' || (i % 20) AS BLOB), CAST('{"id":' || i || '}' AS BLOB), '2026-03-01 00:00:' || printf('%02d', i % 60) FROM n;
