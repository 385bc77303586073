-- "Disabled by staff" is a state of its own, apart from "not activated yet" and "waiting
-- for approval": activation never lifts it, and no activation link is sent while it holds.
-- `is_active` stays the effective flag that login checks.
ALTER TABLE users ADD COLUMN disabled_by_staff BOOLEAN NOT NULL DEFAULT FALSE;
-- Before this column, an inactive account that had verified its email or logged in, and
-- was not waiting for approval, can only have been deactivated by staff.
UPDATE users SET disabled_by_staff = TRUE
 WHERE NOT is_active AND NOT approval_pending AND (email_verified OR last_login IS NOT NULL);

-- When the family's current refresh token was issued (its `iat`; its `exp` is the
-- family's `expires_at`), so that the grace window can hand the very same token out again.
ALTER TABLE token_families ADD COLUMN current_issued_at TIMESTAMP;
