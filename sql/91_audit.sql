-- The audit trail (issue 9): every privileged change appends exactly one
-- entry to booking.audit_log in its own transaction; nobody changes or
-- removes entries; admin and auditor read them (api.list_audit).
\set SHOW_CONTEXT never
SELECT set_config('request.jwt.claims', '', false) = '' AS superuser_session;
SELECT coalesce(max(id), 0) AS before FROM booking.audit_log \gset
SELECT set_config('request.id', 'req-audit-91', false) IS NOT NULL AS request_id_set;

SELECT t_as('admin@example.com', 'booking_admin');
SET ROLE booking_admin;
SELECT api.update_user(t_id('carol@example.com'), role => 'moderator') ->> 'role' AS role_change;
SELECT api.update_user(t_id('carol@example.com'), active => false) ->> 'active' AS deactivated;
SELECT api.update_user(t_id('carol@example.com'), role => 'user', active => true) ->> 'active' AS both_back;
SELECT api.update_user(t_id('carol@example.com')) ->> 'role' AS no_change;   -- nothing changed: no entry
SELECT api.create_room('Audit Room', 'HQ', 5) ->> 'id' AS room \gset
SELECT api.update_room(:room, capacity => 7) ->> 'capacity' AS capacity;
SELECT api.delete_room(:room) ->> 'active' AS deleted;
SELECT api.create_hotel('Audit Hotel', 'Braga') ->> 'id' AS hotel \gset
SELECT jsonb_array_length(api.adjust_inventory(:hotel, 'double', '2099-06-01', '2099-06-03', total => 2)) AS nights;
SELECT api.set_restrictions(:hotel, 'double', '2099-06-01', '2099-06-02', min_stay => 2) ->> 'min_stay' AS min_stay;
SELECT api.run_checkout('2021-01-15') ->> 'business_date' AS checkout;
SELECT api.hide_review((SELECT min(id) FROM booking.reviews)) ->> 'status' AS hidden;
SELECT api.restore_review((SELECT min(id) FROM booking.reviews)) ->> 'status' AS restored;
RESET ROLE;
-- Rate-limit rules are edited in SQL: recorded with the superuser as actor.
SELECT set_config('request.jwt.claims', '', false) = '' AS superuser_session;
UPDATE booking.rate_limits SET max_requests = 31 WHERE endpoint = 'create_booking';
UPDATE booking.rate_limits SET max_requests = 30 WHERE endpoint = 'create_booking';

SELECT action, target_type, actor_role, actor_id = t_id('admin@example.com') AS by_admin, before,
       after - 'id' - 'run_id' AS after, request_id
  FROM booking.audit_log WHERE id > :before ORDER BY id;
-- Exactly one entry per action.
SELECT count(*) AS entries, count(DISTINCT action || coalesce(after::text, '')) AS distinct_entries
  FROM booking.audit_log WHERE id > :before;
-- A failed action leaves none (same transaction).
SELECT t_as('admin@example.com', 'booking_admin');
SET ROLE booking_admin;
SELECT api.adjust_inventory(:hotel, 'double', '2099-06-01', '2099-06-03', delta => -5);
RESET ROLE;
SELECT count(*) AS after_failure FROM booking.audit_log WHERE id > :before AND action = 'inventory.adjust';

-- Append-only, whoever asks: the superuser, the owner's functions, admins.
UPDATE booking.audit_log SET actor_role = 'nobody' WHERE id > :before;
DELETE FROM booking.audit_log WHERE id > :before;
TRUNCATE booking.audit_log;
SET ROLE booking_admin;
UPDATE booking.audit_log SET actor_role = 'nobody';
DELETE FROM booking.audit_log;
INSERT INTO booking.audit_log (actor_role, action, target_type) VALUES ('admin', 'forged', 'nothing');
RESET ROLE;
SELECT count(*) AS still_there FROM booking.audit_log WHERE id > :before;
SELECT has_table_privilege('booking_admin', 'booking.audit_log', 'UPDATE') AS admin_update,
       has_table_privilege('booking_auditor', 'booking.audit_log', 'SELECT') AS auditor_select,
       has_table_privilege('booking_user', 'booking.audit_log', 'SELECT') AS user_select;
-- pg_dump keeps it.
SELECT count(*) AS dumped FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'pg_booking' AND c = 'booking.audit_log'::regclass;

-- The api: auditors and admins read, with filters; a user is refused.
SELECT t_as('auditor@example.com', 'booking_auditor');
SET ROLE booking_auditor;
SELECT jsonb_array_length(api.list_audit(action => 'user')) >= 3 AS user_entries,
       api.list_audit(action => 'room.create', lim => 1) -> 0 ->> 'target_type' AS room_entry,
       jsonb_array_length(api.list_audit(target_type => 'hotel', target_id => :'hotel')) AS hotel_entries;
SELECT api.list_audit(lim => 0);
SELECT count(*) > 0 AS auditor_reads_events FROM booking.events;
RESET ROLE;
SELECT t_as('alice@example.com', 'booking_user');
SET ROLE booking_user;
SELECT api.list_audit();
SELECT count(*) FROM booking.audit_log;
RESET ROLE;
SELECT set_config('request.id', '', false) = '' AS request_id_cleared;
SELECT set_config('request.jwt.claims', '', false) = '' AS superuser_session;
