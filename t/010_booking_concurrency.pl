# Concurrency: 16 clients for 20 s create, reschedule and cancel random,
# overlapping bookings of 5 rooms (two with buffers).  Afterwards no two
# confirmed bookings of a room come closer than the room's buffers allow.
#
# The same detector then runs against the table with the conflict trigger
# disabled and must find overlaps: proof that this test can fail.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use PgBookingTest;

my $clients = $ENV{PGB_HAMMER_CLIENTS} // 16;
my $seconds = $ENV{PGB_HAMMER_SECONDS} // 20;

my $node = booking_node('concurrency', qq{
max_connections = 60
});

# Rooms, users, and a test-only operation that catches the expected
# business errors (pgbench would otherwise stop a client at the first one)
# and records each outcome.
$node->safe_psql('postgres', q{
INSERT INTO booking.rooms (name, location, capacity, buffer_before_minutes, buffer_after_minutes)
VALUES ('R1', 'HQ', 4, 0, 0), ('R2', 'HQ', 4, 0, 0), ('R3', 'HQ', 4, 0, 0),
       ('R4', 'HQ', 4, 10, 5), ('R5', 'HQ', 4, 15, 15);
-- Admins: the clients act as booking_admin, and a token's role must be its user's.
INSERT INTO booking.users (email, full_name, password_hash, role)
SELECT 'user' || i || '@example.com', 'User ' || i, 'x', 'admin' FROM generate_series(1, 16) i;
CREATE UNLOGGED TABLE outcomes (op text, result text);
CREATE FUNCTION hammer(client integer, op integer, room integer, slot integer, minutes integer)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s text := to_json(timestamptz '2099-06-01 08:00+00' + make_interval(mins => slot * 15)) #>> '{}';
    e text := to_json(timestamptz '2099-06-01 08:00+00' + make_interval(mins => slot * 15 + minutes)) #>> '{}';
    victim bigint;
    kind text;
BEGIN
    PERFORM set_config('request.jwt.claims',
        json_build_object('sub', client::text, 'role', 'booking_admin')::text, true);
    IF op < 60 THEN
        kind := 'create';
        PERFORM api.create_booking(room, s, e, 'hammer');
    ELSIF op < 65 THEN
        kind := 'create_series';
        PERFORM api.create_booking(room, s, e, 'series',
            jsonb_build_object('frequency', 'daily', 'count', 3, 'on_conflict', CASE WHEN op % 2 = 0 THEN 'skip' ELSE 'fail' END));
    ELSE
        SELECT id INTO victim FROM booking.bookings
         WHERE status = 'confirmed' AND room_id = room ORDER BY random() LIMIT 1;
        IF victim IS NULL THEN
            RETURN;
        END IF;
        IF op < 90 THEN
            kind := 'reschedule';
            PERFORM api.update_booking(victim, starts_at => s, ends_at => e,
                                       room_id => CASE WHEN op % 5 = 0 THEN 1 + (room % 5) END);
        ELSE
            kind := 'cancel';
            PERFORM api.cancel_booking(victim);
        END IF;
    END IF;
    INSERT INTO outcomes VALUES (kind, 'ok');
EXCEPTION WHEN SQLSTATE 'PT409' OR SQLSTATE 'PT404' THEN
    INSERT INTO outcomes VALUES (kind, CASE WHEN SQLERRM LIKE '%already%' OR SQLERRM LIKE '%clash%' THEN 'conflict' ELSE 'other' END);
END
$$;
});

my $script = write_pgbench_script('hammer', <<'SQL');
\set client random(1, 16)
\set op random(0, 99)
\set room random(1, 5)
\set slot random(0, 95)
\set minutes random(2, 12) * 15
SELECT hammer(:client, :op, :room, :slot, :minutes);
SQL

# The invariant, buffers included: clashes between confirmed bookings.
my $overlaps = q{
SELECT count(*)
  FROM booking.bookings a
  JOIN booking.bookings b ON a.room_id = b.room_id AND a.id < b.id
  JOIN booking.rooms r ON r.id = a.room_id
 WHERE a.status = 'confirmed' AND b.status = 'confirmed'
   AND a.starts_at < b.ends_at + make_interval(mins => r.buffer_before_minutes + r.buffer_after_minutes)
   AND b.starts_at < a.ends_at + make_interval(mins => r.buffer_before_minutes + r.buffer_after_minutes)};

sub hammer { return run_pgbench($node, $script, $clients, $_[0]); }

hammer($seconds);
my $stats = outcomes_summary($node);
note "outcomes: $stats";
my ($ok_creates, $conflicts, $reschedules) = split /\|/, $node->safe_psql('postgres',
	"SELECT count(*) FILTER (WHERE op LIKE 'create%' AND result = 'ok'),
	        count(*) FILTER (WHERE result = 'conflict'),
	        count(*) FILTER (WHERE op = 'reschedule' AND result = 'ok') FROM outcomes");
cmp_ok($ok_creates, '>', 50, "many bookings were created ($ok_creates)");
cmp_ok($conflicts, '>', 100, "the clients really competed: $conflicts conflicts refused");
cmp_ok($reschedules, '>', 10, "reschedules succeeded too ($reschedules)");
my $confirmed = $node->safe_psql('postgres', "SELECT count(*) FROM booking.bookings WHERE status = 'confirmed'");
note "confirmed bookings at the end: $confirmed";
is($node->safe_psql('postgres', $overlaps), '0', 'no two confirmed bookings of a room clash (buffers included)');

# Negative control: without the trigger the same load must produce clashes,
# so the detector above is able to see them.
$node->safe_psql('postgres', 'ALTER TABLE booking.bookings DISABLE TRIGGER bookings_conflict_check');
hammer(3);
cmp_ok($node->safe_psql('postgres', $overlaps), '>', 0,
	'with the conflict trigger disabled, the detector finds clashes (this test can fail)');

$node->stop;
done_testing();
