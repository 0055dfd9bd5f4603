-- Solid Cache 1.0: entries record their size (preserving: a new column with a default, and an index).
ALTER TABLE solid_cache_entries ADD COLUMN byte_size INTEGER NOT NULL DEFAULT 0;
CREATE INDEX index_solid_cache_entries_on_byte_size ON solid_cache_entries(byte_size);
