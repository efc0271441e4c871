-- GET /admin/analytics/rate-limits: denials per endpoint, admin and auditor only.
\set SHOW_CONTEXT never
SET timezone TO 'UTC';
SELECT t_as('admin@example.com', 'booking_admin');
SET ROLE booking_admin;
-- 60_ratelimits refused logins and bookings: the denials show here.
SELECT e ->> 'endpoint' AS endpoint, e -> 'max_requests' AS max, e -> 'window_seconds' AS window_s,
       e ->> 'key_kind' AS key_kind, (e ->> 'denials')::int > 0 AS has_denials
  FROM jsonb_array_elements(api.analytics_rate_limits()) e ORDER BY 1;
RESET ROLE;
SELECT t_as('auditor@example.com', 'booking_auditor');
SET ROLE booking_auditor;
SELECT jsonb_array_length(api.analytics_rate_limits()) > 0 AS auditor_reads;
RESET ROLE;
SELECT t_as('fm@example.com', 'booking_facility_manager');
SET ROLE booking_facility_manager;
SELECT api.analytics_rate_limits();
RESET ROLE;
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.analytics_rate_limits();
RESET ROLE;
