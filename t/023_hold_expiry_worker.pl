# The background worker's minute tick expires holds and approval requests
# (issue 14): a hold and a request past their hold_expires_at become
# "expired" within a minute, with their events published; a hold still
# running and a request without expiry are left alone (the control: the
# tick does not expire what has not expired).  That an expired hold blocks
# nobody before the tick is sql/33_holds_approval.sql's.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $node = PostgreSQL::Test::Cluster->new('hold_expiry');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
pg_booking.checkout_database = 'booking'
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE booking');
$node->safe_psql('booking', 'CREATE EXTENSION pg_booking CASCADE');
my $q = sub { $node->safe_psql('booking', shift) };

$q->(q{
  INSERT INTO booking.users (email, full_name, password_hash) VALUES ('h@example.com', 'H', 'x');
  INSERT INTO booking.rooms (name, location, capacity) VALUES ('Tick Room', 'HQ', 4);
  INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at, status, hold_expires_at)
  SELECT r.id, u.id, v.title, v.s::timestamptz, v.e::timestamptz, v.status, now() + v.expires::interval
    FROM booking.rooms r, booking.users u,
         (VALUES ('lapsing hold',    '2099-01-01 10:00+00', '2099-01-01 11:00+00', 'held',    '2 seconds'),
                 ('lapsing request', '2099-01-01 12:00+00', '2099-01-01 13:00+00', 'pending', '2 seconds'),
                 ('live hold',       '2099-01-01 14:00+00', '2099-01-01 15:00+00', 'held',    '1 hour'),
                 ('waiting request', '2099-01-01 16:00+00', '2099-01-01 17:00+00', 'pending', NULL)) v(title, s, e, status, expires);
});

# Poll until the query answers what is expected (generous: a loaded machine).
sub wait_for
{
	my ($query, $expected, $what, $timeout) = @_;
	my $deadline = time() + $timeout;
	my $got = '';
	while (time() < $deadline)
	{
		$got = $q->($query);
		return pass($what) if $got eq $expected;
		sleep 1;
	}
	return fail("$what: timed out, last result '$got'");
}

my $t0 = time();
# The worker ticks at least once a minute (after its start and its first look).
wait_for(q{SELECT string_agg(title || ' ' || status, ', ' ORDER BY starts_at) FROM booking.bookings},
	'lapsing hold expired, lapsing request expired, live hold held, waiting request pending',
	'the tick expired the lapsed hold and request, and only them', 150);
note sprintf('expired after %.0f s', time() - $t0);
wait_for(q{SELECT string_agg(e.kind, ', ' ORDER BY e.id) FROM booking.events e
             JOIN booking.bookings b ON e.entity = 'booking' AND e.entity_id = b.id::text AND b.status = 'expired'
            WHERE e.kind = 'booking.expired'},
	'booking.expired, booking.expired', 'one booking.expired event each, published', 60);
like(slurp_file($node->logfile), qr/2 holds or requests expired/, 'the worker logged what it expired');

# A second tick finds nothing more (the live hold is not due for an hour).
sleep 2;
is($q->(q{SELECT booking.expire_holds()}), '0', 'nothing else is due');

$node->stop;
done_testing();
