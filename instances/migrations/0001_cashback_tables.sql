-- description: Cashback feature: adds six new tables; changes no existing table or row.
-- verify: SELECT count(*) = 6 FROM sqlite_schema WHERE type = 'table' AND name IN ('cashback_transaction', 'loan_cashback_config', 'tracker_entry', 'tracker_cashback_config', 'user_payment_method', 'cashback_redemption')
-- verify: SELECT count(*) = 0 FROM cashback_transaction

CREATE TABLE IF NOT EXISTS cashback_transaction (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES user(id),
    loan_id INTEGER REFERENCES loan(id),
    tracker_id INTEGER REFERENCES tracker(id),
    points INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('earn', 'transfer', 'redeem', 'adjust')),
    note TEXT,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE INDEX IF NOT EXISTS cashback_transaction_user ON cashback_transaction(user_id, created_at);

CREATE TABLE IF NOT EXISTS loan_cashback_config (
    loan_id INTEGER PRIMARY KEY REFERENCES loan(id),
    rate_basis_points INTEGER NOT NULL DEFAULT 0 CHECK (rate_basis_points >= 0),
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    updated_at TEXT NOT NULL DEFAULT (datetime('now'))
);

CREATE TABLE IF NOT EXISTS tracker_entry (
    id INTEGER PRIMARY KEY,
    tracker_id INTEGER NOT NULL REFERENCES tracker(id),
    amount_cents INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    approved_by INTEGER REFERENCES user(id),
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE INDEX IF NOT EXISTS tracker_entry_tracker ON tracker_entry(tracker_id, status);

CREATE TABLE IF NOT EXISTS tracker_cashback_config (
    tracker_id INTEGER PRIMARY KEY REFERENCES tracker(id),
    points_per_entry INTEGER NOT NULL DEFAULT 0 CHECK (points_per_entry >= 0),
    enabled INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    updated_at TEXT NOT NULL DEFAULT (datetime('now'))
);

CREATE TABLE IF NOT EXISTS user_payment_method (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES user(id),
    kind TEXT NOT NULL CHECK (kind IN ('bank_account', 'upi', 'wallet')),
    details TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0 CHECK (is_default IN (0, 1)),
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE INDEX IF NOT EXISTS user_payment_method_user ON user_payment_method(user_id);

CREATE TABLE IF NOT EXISTS cashback_redemption (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES user(id),
    payment_method_id INTEGER NOT NULL REFERENCES user_payment_method(id),
    points INTEGER NOT NULL CHECK (points > 0),
    status TEXT NOT NULL DEFAULT 'requested' CHECK (status IN ('requested', 'approved', 'paid', 'rejected')),
    requested_at TEXT NOT NULL DEFAULT (datetime('now')),
    processed_at TEXT
);
CREATE INDEX IF NOT EXISTS cashback_redemption_user ON cashback_redemption(user_id, status);
