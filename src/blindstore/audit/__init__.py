"""The audit trail: every S3 and admin action, hash-chained in the sovereign catalog."""
