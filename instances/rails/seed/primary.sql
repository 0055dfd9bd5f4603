-- Seed of the rails example's primary database: users, products, orders. Deterministic.
PRAGMA journal_mode = WAL;
CREATE TABLE users (id INTEGER PRIMARY KEY, email_address TEXT NOT NULL UNIQUE, password_digest TEXT NOT NULL,
                    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE sessions (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), ip_address TEXT, user_agent TEXT,
                       created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX index_sessions_on_user_id ON sessions(user_id);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL,
                       created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), product_id INTEGER NOT NULL REFERENCES products(id),
                     quantity INTEGER NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX index_orders_on_user_id ON orders(user_id);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
INSERT INTO users SELECT i, 'user' || i || '@example.com', 'digest' || i, '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO products SELECT i, 'Product ' || i, 100 * (i % 37 + 1), '2026-01-01 00:00:00', '2026-01-01 00:00:00' FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
INSERT INTO orders SELECT i, i % 500 + 1, i % 200 + 1, i % 5 + 1, '2026-02-01 00:00:00', '2026-02-01 00:00:00' FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
INSERT INTO sessions SELECT i, i % 500 + 1, '10.0.0.' || (i % 250), 'Mozilla/5.0', '2026-03-01 00:00:00', '2026-03-01 00:00:00' FROM n;
