-- Product reviews (additive).
CREATE TABLE reviews (id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL REFERENCES products(id), user_id INTEGER NOT NULL REFERENCES users(id),
                      rating INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5), body TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX index_reviews_on_product_id ON reviews(product_id);
