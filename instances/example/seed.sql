-- Seed for the bundled example instance: a small lending application.
-- Deterministic: the same rows every time it is built.
PRAGMA journal_mode = WAL;

CREATE TABLE user (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    phone TEXT,
    created_at TEXT NOT NULL
);

CREATE TABLE loan (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES user(id),
    principal_cents INTEGER NOT NULL,
    interest_rate REAL NOT NULL,
    term_months INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'closed', 'defaulted')),
    created_at TEXT NOT NULL
);
CREATE INDEX loan_user ON loan(user_id);

CREATE TABLE payment (
    id INTEGER PRIMARY KEY,
    loan_id INTEGER NOT NULL REFERENCES loan(id),
    amount_cents INTEGER NOT NULL,
    paid_at TEXT NOT NULL,
    method TEXT NOT NULL
);
CREATE INDEX payment_loan ON payment(loan_id);

CREATE TABLE tracker (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES user(id),
    name TEXT NOT NULL,
    target_cents INTEGER NOT NULL,
    created_at TEXT NOT NULL
);

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120)
INSERT INTO user (id, name, email, phone, created_at)
SELECT i, 'User ' || i, 'user' || i || '@example.com', printf('+1-555-%04d', i),
       date('2024-01-01', '+' || (i % 300) || ' days')
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
INSERT INTO loan (id, user_id, principal_cents, interest_rate, term_months, status, created_at)
SELECT i, 1 + (i * 7) % 120, 100000 + (i * 7919) % 900000, 3.5 + (i % 10) * 0.25, 12 * (1 + i % 5),
       CASE WHEN i % 11 = 0 THEN 'closed' WHEN i % 37 = 0 THEN 'defaulted' ELSE 'active' END,
       date('2024-02-01', '+' || (i % 250) || ' days')
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 600)
INSERT INTO payment (id, loan_id, amount_cents, paid_at, method)
SELECT i, 1 + (i * 13) % 200, 5000 + (i * 104729) % 50000, date('2024-03-01', '+' || (i % 400) || ' days'),
       CASE i % 3 WHEN 0 THEN 'card' WHEN 1 THEN 'bank_transfer' ELSE 'cash' END
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 80)
INSERT INTO tracker (id, user_id, name, target_cents, created_at)
SELECT i, 1 + (i * 3) % 120, 'Savings goal ' || i, 50000 + i * 1000, date('2024-04-01', '+' || i || ' days')
FROM n;
