-- A tag moved during a rollout (issue 22, docs/images.md "A moved tag is reported, never followed"): before each
-- wave the tags its customers were pinned for are resolved again; a tag now naming another digest (current_digest),
-- or no image at all (current_digest NULL), is recorded here once per upgrade, image and digest found, with its
-- `Image Tag Moved` event in the same transaction. The waves keep installing pinned_digest; when that digest is
-- gone from the registry too (pinned_present false), the upgrade halts before the wave. Re-runnable.
CREATE TABLE IF NOT EXISTS image_tag_moves (
  id BIGSERIAL PRIMARY KEY,
  upgrade_id INT NOT NULL REFERENCES system_upgrades(id) ON DELETE CASCADE,
  repository VARCHAR(255) NOT NULL,
  tag VARCHAR(128) NOT NULL,
  pinned_digest VARCHAR(150) NOT NULL,
  current_digest VARCHAR(150),
  pinned_present BOOLEAN NOT NULL DEFAULT TRUE,
  wave INT NOT NULL,
  customers INT NOT NULL,
  detected_at TIMESTAMP NOT NULL DEFAULT NOW()
);
CREATE UNIQUE INDEX IF NOT EXISTS image_tag_moves_once
  ON image_tag_moves (upgrade_id, repository, tag, pinned_digest, (COALESCE(current_digest, '')));
