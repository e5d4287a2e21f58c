-- The digest each customer's release pins a component's image to (issue 22, docs/images.md): its digest value
-- (`api.image.digest`, the chart contract's form 2) or the part of its tag value after `@` (form 1), read by
-- discovery with the version it ran then. The pre-flight's rollback image is the repository, the tag and this
-- digest (exact) while the inventory still holds that version; a deploy that changes the version makes it stale
-- until the next sync reads the release again (then the tag alone is resolved, as without a digest).
ALTER TABLE customer_image_repositories ADD COLUMN IF NOT EXISTS digest VARCHAR(150);
ALTER TABLE customer_image_repositories ADD COLUMN IF NOT EXISTS digest_version VARCHAR(128);
