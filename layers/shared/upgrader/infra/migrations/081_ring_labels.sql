-- Where a customer's ring came from (issue 21, docs/rings.md): TRUE when a sync read it from the namespace's
-- ring label (CUSTOMER_RING_LABEL). The label wins at every sync, so PATCH refuses to change such a ring (409);
-- when the label goes away, the sync returns the customer to the default ring.
ALTER TABLE customers ADD COLUMN IF NOT EXISTS ring_from_label BOOLEAN NOT NULL DEFAULT FALSE;
