# Concurrency of the smart-room rules together (issue 14): 16 clients for
# 20 s hold, confirm, let holds expire, check in, cancel, book directly,
# join and leave the waitlist, on 5 rooms that require check-in, while the
# background worker releases no-shows and marks expired holds on its test
# clock (pg_booking.checkout_test_clock_offset, moved an hour on every
# second and reloaded: each reload wakes the worker, so it ticks about once
# a second, each tick inside the next slot).  Slots are aligned hours two
# days ahead, so "an entry fits" is "its slot is free".
#
# Afterwards:
#   - no two bookings occupying a room overlap;
#   - every promotion happened exactly once: each promoted entry has one
#     booking of its user, room and slot, no booking comes from two
#     entries, each has one waitlist.promoted event; and only into a free
#     slot (no booking that still blocked the slot when the promotion wrote
#     its booking);
#   - the queue was never jumped: no booking took a slot while an older
#     entry for that slot was waiting (a test trigger logs the clock, under
#     the room's lock, at which each booking took its slot; an entry's
#     created_at and updated_at are read under the same lock);
#   - after a worker tick no waiting entry has a free slot.
#
# Negative control: the promotion moved out of the freeing transaction
# (both waitlist triggers disabled, a side client promoting every 300 ms
# in transactions of its own) must let bookings jump the queue: the
# detector finds them.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use FindBin;
use lib $FindBin::Bin;
use PgBookingTest;

my $clients = $ENV{PGB_HAMMER_CLIENTS} // 16;
my $seconds = $ENV{PGB_HAMMER_SECONDS} // 20;
my $control_seconds = $ENV{PGB_HAMMER_CONTROL_SECONDS} // 6;
my $t_start = time();

my $node = booking_node('smart_rooms', qq{
max_connections = 60
pg_booking.checkout_database = 'postgres'
});
my $q = sub { $node->safe_psql('postgres', shift) };

# Rooms, users (admins: no rate limits, may act on every booking), the
# slots' base, the test's log of who took a slot when, and the clients'
# operation, which catches the expected business errors and records each
# outcome.
$q->(q{
INSERT INTO booking.rooms (name, location, capacity, check_in_required, check_in_window_minutes)
SELECT 'S' || i, 'HQ', 4, true, 10 FROM generate_series(1, 5) i;
INSERT INTO booking.users (email, full_name, password_hash, role)
SELECT 'user' || i || '@example.com', 'User ' || i, 'x', 'admin' FROM generate_series(1, 16) i;
CREATE TABLE slots_base AS SELECT date_trunc('hour', now()) + interval '2 days' AS base;
CREATE UNLOGGED TABLE outcomes (op text, result text);
-- When each booking took its slot: fired after the conflict check, so
-- under the room's lock, in the order of the room's writers.
CREATE TABLE slot_log (booking_id bigint, room_id bigint, starts_at timestamptz, ends_at timestamptz,
                       at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION log_slot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.slot_log (booking_id, room_id, starts_at, ends_at) VALUES (NEW.id, NEW.room_id, NEW.starts_at, NEW.ends_at);
    RETURN NULL;
END $$;
CREATE TRIGGER zz_test_slot_log AFTER INSERT ON booking.bookings FOR EACH ROW EXECUTE FUNCTION log_slot();
-- When each booking changed status: BEFORE, so a freeing is logged before
-- the promotion its AFTER trigger makes (updated_at will not do: a
-- check-in racing a cancel writes it after the cancel).
CREATE TABLE status_log (booking_id bigint, status text, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION log_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.status_log (booking_id, status) VALUES (NEW.id, NEW.status);
    RETURN NEW;
END $$;
CREATE TRIGGER zz_test_status_log BEFORE UPDATE OF status ON booking.bookings
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION log_status();
-- The instant a booking stopped occupying its room by a change of status.
CREATE VIEW freed_at AS
    SELECT booking_id, min(at) AS at FROM status_log
     WHERE NOT booking.status_occupies(status) GROUP BY booking_id;
CREATE FUNCTION hammer(client integer, op integer, room integer, slot integer, ms integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s timestamptz := (SELECT base FROM slots_base) + make_interval(hours => slot);
    e timestamptz := s + interval '1 hour';
    victim bigint;
    kind text;
    det text;
BEGIN
    PERFORM set_config('request.jwt.claims', json_build_object('sub', client::text, 'role', 'booking_admin')::text, true);
    IF op < 18 THEN
        kind := 'hold';         -- expires within 1.5 s: "let expire"
        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status, hold_expires_at)
        VALUES (room, client, 'hold', s, e, 'held', clock_timestamp() + make_interval(secs => ms / 1000.0));
    ELSIF op < 32 THEN
        kind := 'book';
        PERFORM api.create_booking(room, to_json(s) #>> '{}', to_json(e) #>> '{}', 'direct');
    ELSIF op < 50 THEN
        kind := 'waitlist';
        PERFORM api.join_waitlist(room, to_json(s) #>> '{}', to_json(e) #>> '{}', 'wait');
    ELSIF op < 62 THEN
        kind := 'confirm';
        SELECT id INTO victim FROM booking.bookings WHERE status = 'held' AND room_id = room ORDER BY random() LIMIT 1;
        IF victim IS NULL THEN RETURN; END IF;
        PERFORM api.confirm_booking(victim);
    ELSIF op < 70 THEN
        -- The check-in window is in real time and these slots are two days
        -- ahead: the check-in is written as the api's record_check_in
        -- writes it (a row update racing the worker's release of the row).
        kind := 'check_in';
        UPDATE booking.bookings SET checked_in_at = now(), updated_at = now()
         WHERE id = (SELECT id FROM booking.bookings WHERE status = 'confirmed' AND room_id = room
                        AND checked_in_at IS NULL ORDER BY random() LIMIT 1);
    ELSIF op < 86 THEN
        kind := 'cancel';
        SELECT id INTO victim FROM booking.bookings WHERE status IN ('confirmed', 'held') AND room_id = room
         ORDER BY random() LIMIT 1;
        IF victim IS NULL THEN RETURN; END IF;
        PERFORM api.cancel_booking(victim);
    ELSIF op < 94 THEN
        kind := 'withdraw';
        SELECT id INTO victim FROM booking.waitlist WHERE status = 'waiting' AND room_id = room ORDER BY random() LIMIT 1;
        IF victim IS NULL THEN RETURN; END IF;
        PERFORM api.withdraw_waitlist(victim);
    ELSE
        kind := 'expire';       -- as the worker's tick, more often
        PERFORM booking.expire_holds();
    END IF;
    INSERT INTO outcomes VALUES (kind, 'ok');
EXCEPTION
    WHEN SQLSTATE 'PT409' OR SQLSTATE 'PT404' OR SQLSTATE 'PT422' THEN
        GET STACKED DIAGNOSTICS det = PG_EXCEPTION_DETAIL;
        INSERT INTO outcomes VALUES (kind, coalesce(det::jsonb ->> 'error_code', 'error'));
    WHEN deadlock_detected THEN
        INSERT INTO outcomes VALUES (kind, 'deadlock');
END
$$;
});

my $script = write_pgbench_script('smart_rooms', <<'SQL');
\set client random(1, 16)
\set op random(0, 99)
\set room random(1, 5)
\set slot random(0, 23)
\set ms random(0, 1500)
SELECT hammer(:client, :op, :room, :slot, :ms);
SQL
# The side client of the negative control: the promotion in a transaction
# of its own, after a gap (expire_waitlist with an instant long past only
# sweeps the queues).
my $sweeper = write_pgbench_script('sweeper', <<'SQL');
\sleep 300 ms
SELECT booking.expire_waitlist('1970-01-01 00:00+00');
SQL

# pgbench in the background; returns the harness.
sub start_pgbench
{
	my ($file, $n, $secs, $out) = @_;
	return IPC::Run::start(
		[ 'pgbench', '-n', '-c', $n, '-j', 2, '-T', $secs, '-f', $file,
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', $out, '2>', $out);
}

# The worker's clock: slot k's middle (k = 0, 1, ...), one step per call.
my ($base_epoch) = $q->(q{SELECT extract(epoch FROM base)::bigint FROM slots_base});
my $k = 0;
sub tick_clock
{
	my $offset = int($base_epoch + $k * 3600 + 1800 - time());
	$node->append_conf('postgresql.conf', "pg_booking.checkout_test_clock_offset = $offset\n");
	$node->reload;
	$k++;
}

# The detectors.
# Pairs of bookings of a room that occupy it now and overlap (held: until
# its expiry).
my $overlaps = q{
SELECT count(*) FROM booking.bookings a JOIN booking.bookings b ON a.room_id = b.room_id AND a.id < b.id
 WHERE booking.booking_occupies(a.status, a.hold_expires_at, now())
   AND booking.booking_occupies(b.status, b.hold_expires_at, now())
   AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at};
# A booking that took a slot while an older entry for that slot was
# waiting (for a promoted booking: older than its own entry).  A hold that
# had expired when it was written took nothing.  An entry's created_at and
# updated_at are clock readings under the room's lock.
my $jump_rows = q{
  FROM slot_log l JOIN booking.bookings b ON b.id = l.booking_id
  JOIN booking.waitlist w ON w.room_id = l.room_id AND w.starts_at = l.starts_at AND w.ends_at = l.ends_at
  LEFT JOIN booking.waitlist own ON own.booking_id = l.booking_id
 WHERE w.created_at < l.at AND (w.status = 'waiting' OR w.updated_at > l.at)
   AND NOT coalesce(b.hold_expires_at <= l.at, false)
   AND w.id IS DISTINCT FROM own.id
   AND (own.id IS NULL OR (w.created_at, w.id) < (own.created_at, own.id))};
my $queue_jumps = "SELECT count(*) $jump_rows";
# Waiting entries whose slot is free (the conflict check's own look).
my $free_waiting = q{
SELECT count(*) FROM booking.waitlist w
 WHERE w.status = 'waiting' AND w.starts_at > now()
   AND booking.booking_conflicts(w.room_id, w.starts_at, w.ends_at) IS NULL};
# Another booking of the slot, written before the promotion's and still
# occupying at its instant (not freed by then, not a hold expired by then).
my $blocked = q{
          JOIN slot_log ol ON ol.room_id = l.room_id AND ol.booking_id <> l.booking_id
                          AND ol.starts_at < l.ends_at AND l.starts_at < ol.ends_at AND ol.at < l.at
          JOIN booking.bookings o ON o.id = ol.booking_id
          LEFT JOIN freed_at f ON f.booking_id = o.id
         WHERE coalesce(f.at > l.at, true) AND coalesce(o.hold_expires_at > l.at, true)};
# Promotions: [promoted, without booking, bookings (distinct), matching
# user/room/slot, with exactly one waitlist.promoted event, events of
# entries not promoted, promoted into a slot another booking still blocked].
my $promotions = qq{
WITH ev AS (SELECT entity_id FROM booking.events WHERE kind = 'waitlist.promoted'
            UNION ALL SELECT entity_id FROM booking.event_queue WHERE kind = 'waitlist.promoted'),
     p AS (SELECT w.*, (SELECT count(*) FROM ev WHERE ev.entity_id = w.id::text) AS events
             FROM booking.waitlist w WHERE w.status = 'promoted')
SELECT (SELECT count(*) FROM p),
       (SELECT count(*) FROM p WHERE booking_id IS NULL),
       (SELECT count(DISTINCT booking_id) FROM p),
       (SELECT count(*) FROM p JOIN booking.bookings b ON b.id = p.booking_id
         WHERE (b.user_id, b.room_id, b.starts_at, b.ends_at) = (p.user_id, p.room_id, p.starts_at, p.ends_at)),
       (SELECT count(*) FROM p WHERE events = 1),
       (SELECT count(*) FROM ev WHERE ev.entity_id NOT IN (SELECT id::text FROM p)),
       (SELECT count(*) FROM p JOIN slot_log l ON l.booking_id = p.booking_id $blocked)};

# The run: clients, and the worker's clock moved on every second.
my $out = '';
my $t0 = time();
my $h = start_pgbench($script, $clients, $seconds, \$out);
while (time() < $t0 + $seconds)
{
	tick_clock();
	sleep 1;
}
$h->finish;
note $out;
ok($h->result == 0, "pgbench ran $clients clients for $seconds s") or diag $out;
note sprintf('hammer run: %.1f s, worker clock moved %d times', time() - $t0, $k);
my $stats = outcomes_summary($node);
note "outcomes: $stats";

my ($holds, $books, $joins, $free, $confirms, $checkins, $cancels, $withdrawn) = split /\|/, $q->(q{
SELECT count(*) FILTER (WHERE op = 'hold' AND result = 'ok'), count(*) FILTER (WHERE op = 'book' AND result = 'ok'),
       count(*) FILTER (WHERE op = 'waitlist' AND result = 'ok'),
       count(*) FILTER (WHERE op = 'waitlist' AND result = 'WAITLIST_SLOT_FREE'),
       count(*) FILTER (WHERE op = 'confirm' AND result = 'ok'), count(*) FILTER (WHERE op = 'check_in' AND result = 'ok'),
       count(*) FILTER (WHERE op = 'cancel' AND result = 'ok'), count(*) FILTER (WHERE op = 'withdraw' AND result = 'ok')
  FROM outcomes});
cmp_ok($holds, '>', 20, "holds were made ($holds)");
cmp_ok($books, '>', 5, "slots were booked directly ($books)");
cmp_ok($joins, '>', 20, "waitlist entries were made ($joins)");
cmp_ok($free, '>', 0, "joins of a free slot were refused ($free)");
cmp_ok($confirms, '>', 5, "holds were confirmed ($confirms)");
cmp_ok($cancels, '>', 10, "bookings were cancelled ($cancels)");
cmp_ok($withdrawn, '>', 0, "entries were withdrawn ($withdrawn)");
note "check-ins: $checkins";
my ($released, $expired_holds, $expired_entries) = split /\|/, $q->(q{
SELECT (SELECT count(*) FROM booking.bookings WHERE status = 'released'),
       (SELECT count(*) FROM booking.bookings WHERE status = 'expired'),
       (SELECT count(*) FROM booking.waitlist WHERE status = 'expired')});
cmp_ok($released, '>', 0, "the worker released no-shows on its test clock ($released)");
note "holds marked expired: $expired_holds, waitlist entries expired: $expired_entries";
like(slurp_file($node->logfile), qr/no-shows released/, 'the worker logged its releases');

is($q->($overlaps), '0', 'no two bookings occupying a room overlap');
my @p = split /\|/, $q->($promotions);
note "promotions: $p[0]";
cmp_ok($p[0], '>', 10, "entries were promoted ($p[0])");
is($p[1], '0', 'every promoted entry has its booking');
is($p[2], $p[0], 'no booking comes from two entries');
is($p[3], $p[0], 'each promotion is a booking of its user, room and slot');
is($p[4], $p[0], 'each promotion has exactly one waitlist.promoted event');
is($p[5], '0', 'no waitlist.promoted event of an entry not promoted');
is($p[6], '0', 'every promotion went into a free slot')
  or diag $q->(qq{SELECT p.id, l.booking_id, l.at, o.id, ol.at, o.status, o.hold_expires_at, f.at
                    FROM booking.waitlist p JOIN slot_log l ON l.booking_id = p.booking_id $blocked LIMIT 10});
is($q->($queue_jumps), '0', 'nobody took a slot while an older entry for it was waiting')
  or diag $q->(qq{SELECT l.booking_id, b.status, b.hold_expires_at, l.at, w.id, w.status, w.created_at, w.updated_at, own.id
                  $jump_rows ORDER BY l.at LIMIT 10});
# A worker tick (the function it calls, with its clock), then no entry waits for a free slot.
$q->(q{SELECT booking.expire_holds(); SELECT booking.expire_waitlist(booking.checkout_clock())});
is($q->($free_waiting), '0', 'after a tick, no waiting entry has a free slot');
is($q->(q{SELECT count(*) FROM booking.analytics_check()}), '0', 'the analytics counters equal a recount');

# Negative control: the promotion moved out of the freeing transaction.
$q->(q{ALTER TABLE booking.bookings DISABLE TRIGGER bookings_waitlist_freed;
       ALTER TABLE booking.bookings DISABLE TRIGGER bookings_before_check_waitlist;
       TRUNCATE outcomes});
my $jumps_before = $q->($queue_jumps);
my ($out2, $out3) = ('', '');
$t0 = time();
my $h2 = start_pgbench($script, $clients, $control_seconds, \$out2);
my $h3 = start_pgbench($sweeper, 1, $control_seconds, \$out3);
while (time() < $t0 + $control_seconds)
{
	tick_clock();
	sleep 1;
}
$h2->finish;
$h3->finish;
note "control outcomes: " . outcomes_summary($node);
my $jumps = $q->($queue_jumps) - $jumps_before;
my $late_promotions = $q->(q{SELECT count(*) FROM booking.waitlist WHERE status = 'promoted'}) - $p[0];
note "negative control: $jumps queue jumps, $late_promotions promotions by the side client or the worker";
cmp_ok($jumps, '>', 0,
	"with the promotion out of the freeing transaction, the detector finds queue jumps ($jumps): this test can fail");
is($q->($overlaps), '0', 'control: the conflict check still keeps bookings apart');

# The free-slot and overlap detectors can fail too: a promotion forced over
# a confirmed booking (no trigger in replica mode; logged by hand), rolled back.
my @forced = split /\n/, $q->(qq{
BEGIN;
SET LOCAL session_replication_role = replica;
WITH o AS (SELECT * FROM booking.bookings WHERE status = 'confirmed' ORDER BY id LIMIT 1),
     b AS (INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
           SELECT room_id, user_id, 'forced', starts_at, ends_at FROM o RETURNING *),
     l AS (INSERT INTO slot_log (booking_id, room_id, starts_at, ends_at) SELECT id, room_id, starts_at, ends_at FROM b)
INSERT INTO booking.waitlist (room_id, user_id, title, starts_at, ends_at, status, booking_id)
SELECT room_id, user_id, 'forced', starts_at, ends_at, 'promoted', id FROM b;
SELECT ($overlaps) || '|' || split_part(x::text, ',', 7) FROM ($promotions) x;
ROLLBACK;});
my ($forced_overlaps, $forced_blocked) = split /\|/, $forced[-1];
$forced_blocked =~ s/\D//g;
cmp_ok($forced_overlaps, '>', 0, "control: a promotion forced over a booking is an overlap ($forced_overlaps)");
cmp_ok($forced_blocked, '>', 0, "control: ... and a promotion into a slot that was not free ($forced_blocked)");

$node->stop;
note sprintf('t/027 took %.0f s', time() - $t_start);
done_testing();
