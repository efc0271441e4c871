# An orphaned checkout worker writes nothing (issue 9): the postmaster is
# killed (SIGKILL) while the worker works through a backlog of due stays;
# the worker checks the postmaster before every commit and between batches,
# so after the restart no row carries a commit after the kill
# (track_commit_timestamp), and the worker is gone within a batch.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = PostgreSQL::Test::Cluster->new('orphan');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
pg_booking.checkout_database = 'not_yet'
pg_booking.checkout_time_zone = 'UTC'
pg_booking.checkout_time = '00:00:00'
track_commit_timestamp = on
timezone = 'UTC'
});
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE booking');
$node->safe_psql('booking', 'CREATE EXTENSION pg_booking CASCADE');

# A backlog: 60,000 stays whose departure is today, holding no nights (the
# test is about the worker's writes, not the inventory).
my $stays = 60_000;
$node->safe_psql('booking', qq{
INSERT INTO booking.users (email, full_name, password_hash) VALUES ('o\@example.com', 'O', 'x');
INSERT INTO booking.hotels (name, location) VALUES ('Orphan Inn', 'Nowhere');
ALTER TABLE booking.reservations DISABLE TRIGGER reservations_nights;
INSERT INTO booking.reservations (hotel_id, room_type, user_id, guest_name, arrival_date, stay_length, adults, held_until)
SELECT h.id, 'double', u.id, 'Guest', current_date - 2, 2, 1, current_date - 2
  FROM booking.hotels h, booking.users u, generate_series(1, $stays);
ALTER TABLE booking.reservations ENABLE TRIGGER reservations_nights;
});

# The worker follows the setting to its database and runs today's date.
$node->append_conf('postgresql.conf', "pg_booking.checkout_database = 'booking'\n");
$node->reload;
my $done = "SELECT count(*) FROM booking.reservations WHERE status = 'completed'";
my $deadline = time + 120;
my $before = 0;
while (time < $deadline)
{
	$before = $node->safe_psql('booking', $done);
	last if $before > 0;
	usleep(20_000);
}
cmp_ok($before, '>', 0, 'the worker has committed a batch');
cmp_ok($before, '<', $stays, 'and is not done yet');
my $worker = $node->safe_psql('booking', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_booking checkout'");
like($worker, qr/^\d+$/, 'the worker runs');
my $pm = $node->{_pid};
my @children = grep { /^\d+$/ } split /\s+/, `pgrep -P $pm`;

kill 'KILL', $pm;
my $killed_at = time;
note "postmaster $pm killed after $before of $stays stays were completed";

# Every child (the worker among them) exits; the worker within a batch.
my $worker_gone;
$deadline = time + 60;
while (time < $deadline && grep { kill 0, $_ } @children)
{
	$worker_gone //= time - $killed_at unless kill 0, $worker;
	usleep(10_000);
}
$worker_gone //= time - $killed_at unless kill 0, $worker;
ok(defined $worker_gone, 'the orphaned worker exited');
note sprintf('worker gone %.2f s after the kill', $worker_gone // -1);
ok(!(grep { kill 0, $_ } @children), 'no process of the old postmaster is left');

# Restart without the worker's database, so nothing resumes the run.
$node->append_conf('postgresql.conf', "pg_booking.checkout_database = 'not_yet'\n");
unlink $node->data_dir . "/postmaster.pid";
$node->_update_pid(0);
$node->start;
my $after = $node->safe_psql('booking', $done);
my $late = $node->safe_psql('booking', sprintf(q{
SELECT count(*) FROM booking.reservations
 WHERE pg_xact_commit_timestamp(xmin) > to_timestamp(%.6f)}, $killed_at));
my $late_runs = $node->safe_psql('booking', sprintf(q{
SELECT count(*) FROM booking.checkout_runs
 WHERE pg_xact_commit_timestamp(xmin) > to_timestamp(%.6f)}, $killed_at));
note "completed before the kill: $before; after the restart: $after";
is($late, '0', 'no reservation was written after the kill');
is($late_runs, '0', 'no run history was written after the kill');
cmp_ok($after, '<', $stays, 'the run did not go on to the end');
is($node->safe_psql('booking', 'SELECT count(*) FROM booking.inventory_violations()'), '0', 'inventory intact');

$node->stop;
done_testing();
