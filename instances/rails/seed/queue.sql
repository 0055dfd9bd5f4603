-- Seed of the rails example's queue database (part of Solid Queue's tables). Deterministic.
PRAGMA journal_mode = WAL;
CREATE TABLE solid_queue_jobs (id INTEGER PRIMARY KEY, queue_name TEXT NOT NULL, class_name TEXT NOT NULL, arguments TEXT,
                               priority INTEGER NOT NULL DEFAULT 0, active_job_id TEXT, scheduled_at TEXT, finished_at TEXT,
                               concurrency_key TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX index_solid_queue_jobs_on_class_name ON solid_queue_jobs(class_name);
CREATE TABLE solid_queue_ready_executions (id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL UNIQUE REFERENCES solid_queue_jobs(id) ON DELETE CASCADE,
                                           queue_name TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL);
CREATE TABLE solid_queue_processes (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, last_heartbeat_at TEXT NOT NULL, pid INTEGER NOT NULL,
                                    hostname TEXT, metadata TEXT, created_at TEXT NOT NULL, name TEXT NOT NULL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 800)
INSERT INTO solid_queue_jobs SELECT i, CASE i % 3 WHEN 0 THEN 'default' WHEN 1 THEN 'mailers' ELSE 'background' END, 'OrderMailerJob',
       '{"order_id":' || i || '}', 0, 'job-' || i, '2026-03-01 00:00:00', CASE WHEN i <= 700 THEN '2026-03-01 00:01:00' END, NULL,
       '2026-03-01 00:00:00', '2026-03-01 00:00:00' FROM n;
INSERT INTO solid_queue_ready_executions SELECT id, id, queue_name, 0, created_at FROM solid_queue_jobs WHERE finished_at IS NULL;
INSERT INTO solid_queue_processes VALUES (1, 'Supervisor', '2026-03-01 00:00:00', 4242, 'app-1', NULL, '2026-03-01 00:00:00', 'supervisor-1');
