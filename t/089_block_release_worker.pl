# Group blocks are released by the nightly checkout worker (issue 15): the
# worker's run of a business date calls booking.release_blocks(date), which
# returns the rooms not picked up of every block whose release date has come,
# exactly once.  The worker is driven by the test-only clock offset, as in
# t/021_checkout_worker.pl.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $day = 86400;

sub wait_for
{
	my ($node, $query, $expected, $what) = @_;
	my $deadline = time() + 180;
	my $got = '';
	while (time() < $deadline)
	{
		$got = $node->safe_psql('booking', $query);
		return pass($what) if $got eq $expected;
		sleep 1;
	}
	fail("$what: timed out, last result '$got'");
}

# The run of a date is due at 23:59:59 UTC of that date: on first start the
# date due is yesterday (not too close to midnight, or it would be today).
plan skip_all => 'too close to midnight UTC' if time() % $day > $day - 300;

my $node = PostgreSQL::Test::Cluster->new('block_release_worker');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
pg_booking.checkout_database = 'booking'
pg_booking.checkout_time = '23:59:59'
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE booking');
$node->safe_psql('booking', q{
CREATE EXTENSION pg_booking CASCADE;
INSERT INTO booking.hotels (name, location) VALUES ('H1', 'Lisbon');
INSERT INTO booking.inventory (hotel_id, room_type, night, total, available)
SELECT 1, 'double', n::date, 3, 3 FROM generate_series(date '2099-07-01', date '2099-07-05', interval '1 day') n;
-- Released on today's business date: 2 rooms held on 07-02..07-04, one picked up.
SELECT api.create_block(1, 'double', 'W1', '2099-07-02', '2099-07-04', 2, to_char(booking.hotel_today(), 'YYYY-MM-DD'));
INSERT INTO booking.users (email, full_name, password_hash, role) VALUES ('a@example.com', 'A', 'x', 'admin');
SELECT set_config('request.jwt.claims', '{"sub": "1", "role": "booking_admin"}', false),
       api.create_reservation(1, 'double', 'Member', '2099-07-02', 3, group_code => 'W1') ? 'block_id';
});
my $today = $node->safe_psql('booking', 'SELECT booking.hotel_today()');
is($node->safe_psql('booking', q{SELECT string_agg(available::text, ',' ORDER BY night) FROM booking.inventory}),
	'3,1,1,1,3', 'the block holds its rooms (one of them picked up)');

# On first start the worker runs the date due: yesterday.
wait_for($node, 'SELECT count(*) > 0 FROM booking.checkout_runs WHERE finished_at IS NOT NULL AND error IS NULL', 't',
	'the worker ran its first business date');
is($node->safe_psql('booking', 'SELECT max(business_date) < booking.hotel_today() FROM booking.checkout_runs'), 't',
	'a date before the release date');
is($node->safe_psql('booking', 'SELECT count(*) FROM booking.block_releases'), '0', 'the block is not released before its date');

# Two days later (test clock): the run of today's date releases it, once.
$node->append_conf('postgresql.conf', "pg_booking.checkout_test_clock_offset = " . (2 * $day) . "\n");
$node->reload;
wait_for($node, "SELECT count(*) FROM booking.block_releases WHERE source = 'worker' AND as_of = '$today'", '1',
	'the worker released the block with the run of its release date');
wait_for($node, "SELECT count(*) > 0 FROM booking.checkout_runs WHERE business_date > '$today' AND finished_at IS NOT NULL", 't',
	'and ran the next date too');
is($node->safe_psql('booking', 'SELECT count(*) || \' \' || sum(rooms_returned) FROM booking.block_releases'), '1 3',
	'released once: the 3 room nights not picked up came back');
is($node->safe_psql('booking', q{SELECT string_agg(available::text, ',' ORDER BY night) FROM booking.inventory}),
	'3,2,2,2,3', 'to general inventory');
is($node->safe_psql('booking', q{SELECT (SELECT count(*) FROM booking.inventory_violations()) + (SELECT count(*) FROM booking.block_violations())}),
	'0', 'the invariants hold');

$node->stop;
done_testing();
