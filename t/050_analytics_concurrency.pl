# Analytics under concurrency: 16 clients for 15 s create, reschedule, move,
# cancel and complete bookings (some statements span two rooms), and change,
# hide and restore reviews, some of it rolled back in subtransactions.
# Afterwards every counter kept by the C triggers equals a full recount
# (booking.analytics_check() is empty).
#
# Then the check must see a counter that was changed behind the triggers'
# back: proof that this test can fail.  Last, NOTIFY: a listener hears the
# events of a committed change and nothing of a rolled-back one.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use PgBookingTest;

my $clients = $ENV{PGB_HAMMER_CLIENTS} // 16;
my $seconds = $ENV{PGB_HAMMER_SECONDS} // 15;

my $node = booking_node('analytics', qq{
max_connections = 60
});

# Rooms, users, reviews of ended bookings, and a test-only operation that
# catches the expected business errors (pgbench stops a client at the
# first error) and records each outcome.
$node->safe_psql('postgres', q{
INSERT INTO booking.rooms (name, location, capacity, buffer_before_minutes)
SELECT 'R' || i, 'HQ', 4, CASE WHEN i % 3 = 0 THEN 10 ELSE 0 END FROM generate_series(1, 6) i;
-- Admins: the clients act as booking_admin, and a token's role must be its user's.
INSERT INTO booking.users (email, full_name, password_hash, role)
SELECT 'user' || i || '@example.com', 'User ' || i, 'x', 'admin' FROM generate_series(1, 16) i;
-- (Two hours apart: completed bookings occupy their slot, buffers included.)
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status)
SELECT r, u, 'past', timestamptz '2020-01-01 08:00+00' + make_interval(hours => r * 100 + 2 * u),
       timestamptz '2020-01-01 09:00+00' + make_interval(hours => r * 100 + 2 * u), 'completed'
  FROM generate_series(1, 6) r, generate_series(1, 16) u;
INSERT INTO booking.reviews (room_id, user_id, rating, comment)
SELECT r, u, 1 + (r + u) % 5, 'fixture' FROM generate_series(1, 6) r, generate_series(1, 16) u;
CREATE UNLOGGED TABLE outcomes (op text, result text);
CREATE FUNCTION hammer(client integer, op integer, room integer, slot integer, minutes integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s text := to_json(timestamptz '2099-06-01 08:00+00' + make_interval(mins => slot * 15)) #>> '{}';
    e text := to_json(timestamptz '2099-06-01 08:00+00' + make_interval(mins => slot * 15 + minutes)) #>> '{}';
    victim bigint;
    ids bigint[];
    kind text;
BEGIN
    PERFORM set_config('request.jwt.claims',
        json_build_object('sub', client::text, 'role', 'booking_admin')::text, true);
    IF op < 45 THEN
        kind := 'create';
        PERFORM api.create_booking(room, s, e, 'hammer');
    ELSIF op < 50 THEN
        kind := 'create_series';
        PERFORM api.create_booking(room, s, e, 'series', '{"frequency": "daily", "count": 3, "on_conflict": "skip"}');
    ELSIF op < 80 THEN
        SELECT id INTO victim FROM booking.bookings
         WHERE status = 'confirmed' AND room_id = room ORDER BY random() LIMIT 1;
        IF victim IS NULL THEN
            RETURN;
        END IF;
        IF op < 65 THEN
            kind := 'reschedule';
            PERFORM api.update_booking(victim, starts_at => s, ends_at => e,
                                       room_id => CASE WHEN op % 3 = 0 THEN 1 + (room % 6) END);
        ELSIF op < 75 THEN
            kind := 'cancel';
            PERFORM api.cancel_booking(victim);
        ELSE
            kind := 'complete';
            UPDATE booking.bookings SET status = 'completed' WHERE id = victim;
        END IF;
    ELSIF op < 85 THEN
        -- One statement over two rooms: the counters are locked in room
        -- order; the bookings first, in id order, so this op cannot
        -- deadlock on the booking rows either.
        kind := 'cancel_two_rooms';
        SELECT array_agg(id ORDER BY id) INTO ids
          FROM ((SELECT x.id FROM booking.bookings x WHERE x.status = 'confirmed' AND x.room_id = room
                  ORDER BY random() LIMIT 1)
                UNION ALL
                (SELECT x.id FROM booking.bookings x WHERE x.status = 'confirmed' AND x.room_id = 1 + room % 6
                  ORDER BY random() LIMIT 1)) s;
        PERFORM 1 FROM booking.bookings WHERE id = ANY (ids) ORDER BY id FOR UPDATE;
        UPDATE booking.bookings SET status = 'cancelled' WHERE id = ANY (ids) AND status = 'confirmed';
    ELSIF op < 95 THEN
        kind := 'review';
        UPDATE booking.reviews
           SET rating = 1 + slot % 5,
               status = CASE op % 3 WHEN 0 THEN 'hidden' WHEN 1 THEN 'visible' ELSE status END,
               room_id = CASE WHEN op = 94 AND NOT EXISTS (SELECT 1 FROM booking.reviews x
                                                            WHERE x.room_id = 1 + (room % 6) AND x.user_id = client)
                              THEN 1 + (room % 6) ELSE room_id END
         WHERE room_id = room AND user_id = client;
    ELSE
        -- A change undone by a subtransaction: its deltas must go with it.
        kind := 'rolled_back';
        BEGIN
            PERFORM api.create_booking(room, s, e, 'undone');
            UPDATE booking.reviews SET status = 'hidden' WHERE room_id = room AND user_id = client;
            RAISE SQLSTATE 'PT499' USING MESSAGE = 'undo';
        EXCEPTION WHEN SQLSTATE 'PT499' THEN
            NULL;
        END;
    END IF;
    INSERT INTO outcomes VALUES (kind, 'ok');
EXCEPTION WHEN SQLSTATE 'PT409' OR SQLSTATE 'PT404' OR SQLSTATE '23505' THEN
    INSERT INTO outcomes VALUES (kind, 'refused');
END
$$;
});

my $script = write_pgbench_script('analytics_hammer', <<'SQL');
\set client random(1, 16)
\set op random(0, 99)
\set room random(1, 6)
\set slot random(0, 95)
\set minutes random(2, 8) * 15
SELECT hammer(:client, :op, :room, :slot, :minutes);
SQL

my ($out, $err) = run_pgbench($node, $script, $clients, $seconds);
unlike($err, qr/deadlock|aborted/i, 'no client hit a deadlock or an error');

my $stats = outcomes_summary($node);
note "outcomes: $stats";
my %n = map { split / / } split /\n/, $node->safe_psql('postgres',
	"SELECT op || ' ' || count(*) FROM outcomes WHERE result = 'ok' GROUP BY op");
cmp_ok($n{$_} // 0, '>', 10, "$_: more than 10 done (" . ($n{$_} // 0) . ')')
  for qw(create reschedule cancel complete cancel_two_rooms review rolled_back);

is($node->safe_psql('postgres', 'SELECT count(*) FROM booking.analytics_check()'), '0',
	'after the load every counter equals a full recount')
  or diag $node->safe_psql('postgres', 'SELECT * FROM booking.analytics_check()');
is($node->safe_psql('postgres', q{
	SELECT (SELECT to_jsonb(s) FROM booking.analytics_bookings_summary s)
	     = (SELECT jsonb_build_object('total', (SELECT count(*) FROM booking.bookings))
	               || jsonb_object_agg(st, (SELECT count(*) FROM booking.bookings b WHERE b.status = st))
	          FROM unnest(booking.booking_statuses()) st)}), 't', 'the summary view equals the GROUP BY over the bookings');
is($node->safe_psql('postgres', "SELECT count(*) FROM booking.bookings WHERE title = 'undone'"), '0',
	'rolled-back creates left no booking');

# Negative control: a counter changed behind the triggers' back is reported.
$node->safe_psql('postgres', 'UPDATE booking.room_rating_counts SET rating_sum = rating_sum + 1 WHERE room_id = 2');
is($node->safe_psql('postgres', "SELECT summary || ' ' || room_id || ' ' || counter || ' ' || (kept - recounted) FROM booking.analytics_check()"),
	'room_rating_counts 2 rating_sum 1', 'a drifted counter is found (this test can fail)');
$node->safe_psql('postgres', 'SELECT booking.analytics_rebuild()');
is($node->safe_psql('postgres', 'SELECT count(*) FROM booking.analytics_check()'), '0', 'the rebuild repairs it');

# NOTIFY: one session listens, creates a booking (committed) and another in
# a rolled-back transaction, then publishes (no publisher worker serves this
# database); psql prints the notifications it received.
$node->safe_psql('postgres', 'SELECT booking.publish_events()');
my $max_before = $node->safe_psql('postgres', 'SELECT coalesce(max(id), 0) FROM booking.events');
my ($stdout, $stderr);
$node->psql('postgres', q{
LISTEN pg_booking_events;
SELECT set_config('request.jwt.claims', '{"sub": "1", "role": "booking_admin"}', false);
SELECT api.create_booking(1, '2099-12-01T09:00:00Z', '2099-12-01T10:00:00Z', 'heard') ->> 'id';
BEGIN;
SELECT api.create_booking(2, '2099-12-01T09:00:00Z', '2099-12-01T10:00:00Z', 'unheard') ->> 'id';
ROLLBACK;
SELECT booking.publish_events();
}, stdout => \$stdout, stderr => \$stderr);
my @payloads = ($stdout =~ /with payload "(\{.*?\})" received/g);
is(scalar(@payloads), 1, 'one notification for the publish') or diag $stdout;
my ($event_id) = ($payloads[0] // '') =~ /"last_id": (\d+)/;
is($node->safe_psql('postgres', "SELECT kind || ' ' || (payload ->> 'room_id') FROM booking.events WHERE id = " . ($event_id // 0)),
	'booking.created 1', 'the notified id is the appended event');
is($node->safe_psql('postgres', "SELECT count(*) FROM booking.events WHERE id > $max_before"), '1',
	'the rolled-back create appended no event');

$node->stop;
done_testing();
