# Concurrency of holds (issue 14): 12 clients for 12 s on 3 rooms make
# holds that expire within 0.4 s, book over them (an expired hold blocks
# nobody), confirm random holds behind the api's back (a plain UPDATE, so
# a hold that has expired and been booked over must be refused by the
# trigger's second look), cancel some, and run the worker's expire_holds()
# meanwhile.
# Afterwards no two confirmed bookings of a room overlap and the analytics
# counters equal a recount.
#
# Negative control: the same load with the confirms written unchecked
# (session_replication_role = replica, so the conflict trigger does not
# fire for them) must produce overlaps: the detector sees them, and the
# confirms really do meet holds that were booked over.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use PgBookingTest;

my $clients = $ENV{PGB_HAMMER_CLIENTS} // 12;
my $seconds = $ENV{PGB_HAMMER_SECONDS} // 12;

my $node = booking_node('hold_concurrency', qq{
max_connections = 60
});

$node->safe_psql('postgres', q{
INSERT INTO booking.rooms (name, location, capacity) VALUES ('H1', 'HQ', 4), ('H2', 'HQ', 4), ('H3', 'HQ', 4);
INSERT INTO booking.users (email, full_name, password_hash, role)
SELECT 'user' || i || '@example.com', 'User ' || i, 'x', 'admin' FROM generate_series(1, 12) i;
CREATE UNLOGGED TABLE outcomes (op text, result text);
CREATE FUNCTION hammer(client integer, op integer, room integer, slot integer, minutes integer, ms integer,
                       unchecked_confirm boolean)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    s timestamptz := timestamptz '2099-06-01 08:00+00' + make_interval(mins => slot * 15);
    e timestamptz := timestamptz '2099-06-01 08:00+00' + make_interval(mins => slot * 15 + minutes);
    victim bigint;
    kind text;
BEGIN
    PERFORM set_config('request.jwt.claims', json_build_object('sub', client::text, 'role', 'booking_admin')::text, true);
    IF op < 35 THEN
        kind := 'hold';
        INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status, hold_expires_at)
        VALUES (room, client, 'hold', s, e, 'held', clock_timestamp() + make_interval(secs => ms / 1000.0));
    ELSIF op < 65 THEN
        kind := 'create';
        PERFORM api.create_booking(room, to_json(s) #>> '{}', to_json(e) #>> '{}', 'booking');
    ELSIF op < 92 THEN
        kind := 'confirm';
        SELECT id INTO victim FROM booking.bookings WHERE status = 'held' AND room_id = room ORDER BY random() LIMIT 1;
        IF victim IS NULL THEN
            RETURN;
        END IF;
        IF unchecked_confirm THEN
            PERFORM set_config('session_replication_role', 'replica', true);
        END IF;
        UPDATE booking.bookings SET status = 'confirmed', hold_expires_at = NULL, updated_at = now() WHERE id = victim;
    ELSIF op < 96 THEN
        IF unchecked_confirm THEN
            RETURN;             -- the control keeps every overlap it makes
        END IF;
        kind := 'cancel';       -- keeps the rooms from filling up
        UPDATE booking.bookings SET status = 'cancelled', updated_at = now()
         WHERE id = (SELECT id FROM booking.bookings WHERE status = 'confirmed' AND room_id = room ORDER BY random() LIMIT 1);
    ELSE
        kind := 'expire';
        PERFORM booking.expire_holds();
    END IF;
    INSERT INTO outcomes VALUES (kind, 'ok');
EXCEPTION WHEN SQLSTATE 'PT409' THEN
    INSERT INTO outcomes VALUES (kind, 'conflict');
END
$$;
});

sub script
{
	my ($name, $unchecked) = @_;
	return write_pgbench_script($name, <<"SQL");
\\set client random(1, 12)
\\set op random(0, 99)
\\set room random(1, 3)
\\set slot random(0, 191)
\\set minutes random(1, 6) * 15
\\set ms random(0, 400)
SELECT hammer(:client, :op, :room, :slot, :minutes, :ms, $unchecked);
SQL
}

my $overlaps = q{
SELECT count(*)
  FROM booking.bookings a
  JOIN booking.bookings b ON a.room_id = b.room_id AND a.id < b.id
 WHERE a.status = 'confirmed' AND b.status = 'confirmed'
   AND a.starts_at < b.ends_at AND b.starts_at < a.ends_at};

run_pgbench($node, script('holds', 'false'), $clients, $seconds);
note 'outcomes: ' . outcomes_summary($node);
my ($holds, $creates, $confirms, $refused) = split /\|/, $node->safe_psql('postgres',
	"SELECT count(*) FILTER (WHERE op = 'hold' AND result = 'ok'),
	        count(*) FILTER (WHERE op = 'create' AND result = 'ok'),
	        count(*) FILTER (WHERE op = 'confirm' AND result = 'ok'),
	        count(*) FILTER (WHERE op = 'confirm' AND result = 'conflict') FROM outcomes");
cmp_ok($holds, '>', 30, "many holds were made ($holds)");
cmp_ok($creates, '>', 30, "many bookings were made, over expired holds too ($creates)");
cmp_ok($confirms, '>', 10, "holds were confirmed ($confirms)");
cmp_ok($refused, '>', 0, "confirms of holds booked over were refused by the trigger ($refused)");
is($node->safe_psql('postgres', $overlaps), '0', 'no two confirmed bookings of a room overlap');
sleep 1;	# every hold has expired by now
$node->safe_psql('postgres', 'SELECT booking.expire_holds()');
is($node->safe_psql('postgres', "SELECT count(*) FROM booking.bookings WHERE status = 'held'"), '0', 'every hold expired or confirmed');
is($node->safe_psql('postgres', 'SELECT count(*) FROM booking.analytics_check()'), '0',
	'the analytics counters equal a recount, every status included');

# Negative control: unchecked confirms meet holds that were booked over.
run_pgbench($node, script('holds_unchecked', 'true'), $clients, 6);
note 'outcomes with unchecked confirms: ' . outcomes_summary($node);
my $found = $node->safe_psql('postgres', $overlaps);
cmp_ok($found, '>', 0, "with confirms written unchecked, the detector finds overlaps ($found): this test can fail");

$node->stop;
done_testing();
