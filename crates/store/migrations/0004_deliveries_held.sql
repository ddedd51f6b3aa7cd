-- claim_due's "is a claim of this webhook held?" check: a seek over the few
-- held pending rows, not a scan of the webhook's whole delivery history
-- while the write lock is held.
CREATE INDEX deliveries_held ON deliveries (webhook_id, claimed_until)
    WHERE state = 'pending' AND claimed_until IS NOT NULL;
