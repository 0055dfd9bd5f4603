-- Solid Cable 3: messages are looked up by a hash of the channel (preserving: a new column and index).
ALTER TABLE solid_cable_messages ADD COLUMN channel_hash INTEGER;
CREATE INDEX index_solid_cable_messages_on_channel_hash ON solid_cable_messages(channel_hash);
