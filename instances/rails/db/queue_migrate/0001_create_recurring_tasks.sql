-- Solid Queue recurring tasks (additive).
CREATE TABLE solid_queue_recurring_tasks (id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, schedule TEXT NOT NULL, command TEXT,
                                          class_name TEXT, arguments TEXT, queue_name TEXT, priority INTEGER DEFAULT 0,
                                          static INTEGER NOT NULL DEFAULT 1, description TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
