-- Images checked before the first wave and pinned by digest (issue 22, docs/images.md).
-- Each customer's image repository per component, read by discovery from its release's values (the sibling of
-- the component's tag key, e.g. api.image.repository): the pre-flight's target and rollback images are that
-- repository with the new tag and with the tag it runs now. A customer without a row here is not checked
-- (IMAGE_PREFLIGHT=auto) or refused (IMAGE_PREFLIGHT=required) until a sync reads its repository.
CREATE TABLE IF NOT EXISTS customer_image_repositories (
  customer_id VARCHAR(63) NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
  component VARCHAR(50) NOT NULL,
  repository VARCHAR(255) NOT NULL,
  updated_at TIMESTAMP NOT NULL DEFAULT NOW(),
  PRIMARY KEY (customer_id, component)
);

-- The digests the pre-flight resolved for each customer row: what every wave installs (the target) and what a
-- rollback of that customer installs (its previous image). NULL: not checked (see system_upgrades.parameters).
ALTER TABLE customer_upgrade_logs ADD COLUMN IF NOT EXISTS image_repository VARCHAR(255);
ALTER TABLE customer_upgrade_logs ADD COLUMN IF NOT EXISTS target_digest VARCHAR(150);
ALTER TABLE customer_upgrade_logs ADD COLUMN IF NOT EXISTS rollback_digest VARCHAR(150);
