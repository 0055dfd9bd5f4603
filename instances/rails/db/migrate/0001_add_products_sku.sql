-- Products get a stock-keeping unit (preserving: a new column on an existing table).
ALTER TABLE products ADD COLUMN sku TEXT;
