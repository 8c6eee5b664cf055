-- Regions (contract §10): a chat's shape as its JSON, absent for a pin;
-- the latest URLs an image and its page were seen at.
ALTER TABLE chats ADD COLUMN shape TEXT;
ALTER TABLE images ADD COLUMN image_url TEXT;
ALTER TABLE images ADD COLUMN page_url TEXT;
