# The nightly checkout worker, driven by its settings instead of by waiting
# days: a run time a few seconds ahead, and the test-only clock offset
# (pg_booking.checkout_test_clock_offset) to jump whole days.
#
#   - it waits quietly for its database and for CREATE EXTENSION;
#   - on first start it runs the date due, then runs the next date at its time;
#   - a restart right after a run does not run it again;
#   - after a stop of several days it catches up every missed day, once;
#   - an ERROR in a run is recorded, and the next day still runs;
#   - SIGHUP changes the run time;
#   - a SIGTERM to the launcher does not unregister it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use POSIX qw(strftime);

my $day = 86400;

# HH:MM:SS (UTC) of an instant; fails the test rather than cross midnight.
sub clock_in
{
	my ($secs) = @_;
	my $t = int(time() + $secs);	# the run time has whole seconds
	my $midnight = int(time() / $day) * $day + $day;
	plan skip_all => 'too close to midnight UTC for a run time a few seconds ahead'
	  if $t + 120 > $midnight;
	return (strftime('%H:%M:%S', gmtime($t)), $t);
}

# Poll a query until it returns the expected value (generous: a loaded machine).
sub wait_for
{
	my ($node, $query, $expected, $what, $timeout) = @_;
	$timeout //= 180;
	my $deadline = time() + $timeout;
	my $got = '';
	while (time() < $deadline)
	{
		$got = $node->safe_psql('booking', $query);
		return 1 if $got eq $expected;
		sleep 1;
	}
	fail("$what: timed out, last result '$got'");
	return 0;
}

sub wait_for_log
{
	my ($node, $pattern, $offset, $what) = @_;
	my $deadline = time() + 180;
	while (time() < $deadline)
	{
		return 1 if slurp_file($node->logfile, $offset) =~ $pattern;
		sleep 1;
	}
	fail("$what: '$pattern' not logged");
	return 0;
}

my ($run_at, $run_epoch) = clock_in(40);
my $node = PostgreSQL::Test::Cluster->new('checkout');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
pg_booking.checkout_database = 'booking'
pg_booking.checkout_time_zone = 'UTC'
pg_booking.checkout_time = '$run_at'
timezone = 'UTC'
});
$node->start;

# No database yet: one line, no crash loop.
wait_for_log($node, qr/database "booking" does not exist, waiting for it/, 0, 'launcher waits for the database');
sleep 12;
my $log = slurp_file($node->logfile);
my $waits = () = $log =~ /does not exist, waiting for it/g;
is($waits, 1, 'the launcher says once that it waits for the database');
unlike($log, qr/exited with exit code|FATAL/, 'no worker exited or failed while waiting');

# Database without the extension: the worker waits quietly too.
my $offset = -s $node->logfile;
$node->safe_psql('postgres', 'CREATE DATABASE booking');
wait_for_log($node, qr/extension pg_booking is not installed in "booking", waiting/, $offset, 'worker waits for the extension');
$node->safe_psql('booking', 'CREATE EXTENSION pg_booking CASCADE');

my $today = $node->safe_psql('booking', "SELECT (now() AT TIME ZONE 'UTC')::date");
my $yesterday = $node->safe_psql('booking', "SELECT (now() AT TIME ZONE 'UTC')::date - 1");
my $runs = "SELECT string_agg(business_date || ':' || source || ':' || coalesce(error, 'ok'), ' ' ORDER BY business_date, id)
              FROM booking.checkout_runs";

# First start: the date already due (yesterday) is run at once.
wait_for($node, $runs, "$yesterday:worker:ok", 'first start runs the date due');
cmp_ok(time(), '<', $run_epoch, 'that was before the run time of today');

# Today's date runs at the run time, not before.
wait_for($node, $runs, "$yesterday:worker:ok $today:worker:ok", "today's date runs at its time");
my $started = $node->safe_psql('booking',
	"SELECT extract(epoch FROM started_at) FROM booking.checkout_runs WHERE business_date = '$today'");
cmp_ok($started, '>=', $run_epoch, 'it started at or after the run time');
cmp_ok($started, '<', $run_epoch + 90, 'and within 90 s of it');

# A restart right after the run does not run it again.
$offset = -s $node->logfile;
$node->restart;
wait_for_log($node, qr/pg_booking checkout: started in database "booking"/, $offset, 'worker back after restart');
sleep 5;
is($node->safe_psql('booking', $runs), "$yesterday:worker:ok $today:worker:ok", 'no date ran twice after a restart');

# Down for three days: each missed day is caught up once, in order.
$node->stop;
$node->append_conf('postgresql.conf', "pg_booking.checkout_test_clock_offset = " . (3 * $day) . "\n");
$node->start;
my @d = map { $node->safe_psql('booking', "SELECT '$today'::date + $_") } 1 .. 6;
wait_for($node, "SELECT count(*) FROM booking.checkout_runs WHERE business_date > '$today'", '3', 'catch-up of three days');
is($node->safe_psql('booking', $runs),
	"$yesterday:worker:ok $today:worker:ok $d[0]:worker:ok $d[1]:worker:ok $d[2]:worker:ok",
	'each missed day ran exactly once');
$node->restart;
sleep 8;
is($node->safe_psql('booking', "SELECT count(*) FROM booking.checkout_runs"), '5', 'a restart after the catch-up runs nothing again');

# An ERROR inside a run: recorded, logged, and the worker lives on.
$node->safe_psql('booking', q{
INSERT INTO booking.users (email, full_name, password_hash) VALUES ('w@example.com', 'W', 'x');
INSERT INTO booking.rooms (name, location, capacity) VALUES ('Night room', 'HQ', 2);
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
SELECT r.id, u.id, 'ended', now() - interval '3 hours', now() - interval '2 hours'
  FROM booking.rooms r, booking.users u;
CREATE FUNCTION public.refuse() RETURNS trigger LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'provoked failure of the nightly checkout'; END $$;
CREATE TRIGGER refuse BEFORE UPDATE ON booking.bookings FOR EACH ROW EXECUTE FUNCTION public.refuse();
});
my $worker_pid = $node->safe_psql('booking', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_booking checkout'");
$offset = -s $node->logfile;
$node->append_conf('postgresql.conf', "pg_booking.checkout_test_clock_offset = " . (4 * $day) . "\n");
$node->reload;
wait_for($node, "SELECT count(*) FROM booking.checkout_runs WHERE business_date = '$d[3]' AND error IS NOT NULL", '1',
	'the failed run is recorded');
like($node->safe_psql('booking', "SELECT error FROM booking.checkout_runs WHERE business_date = '$d[3]'"),
	qr/provoked failure/, 'with its error');
wait_for_log($node, qr/business date $d[3] failed: provoked failure/, $offset, 'the failure is logged');
is($node->safe_psql('booking', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_booking checkout'"),
	$worker_pid, 'the same worker process lives on');
$node->safe_psql('booking', 'DROP TRIGGER refuse ON booking.bookings');
$node->append_conf('postgresql.conf', "pg_booking.checkout_test_clock_offset = " . (5 * $day) . "\n");
$node->reload;
wait_for($node, "SELECT coalesce(error, 'ok') FROM booking.checkout_runs WHERE business_date = '$d[4]'", 'ok',
	'the next day runs after the failure');
is($node->safe_psql('booking', "SELECT status FROM booking.bookings WHERE title = 'ended'"), 'completed',
	'and completes the ended meeting');

# SIGHUP changes the run time: one more day ahead, due 30 s from now.
my ($new_time, $new_epoch) = clock_in(30);
$node->append_conf('postgresql.conf', "pg_booking.checkout_test_clock_offset = " . (6 * $day) . "\npg_booking.checkout_time = '$new_time'\n");
$node->reload;
sleep 5;
is($node->safe_psql('booking', "SELECT count(*) FROM booking.checkout_runs WHERE business_date = '$d[5]'"), '0',
	'the next date waits for the new run time');
wait_for($node, "SELECT count(*) FROM booking.checkout_runs WHERE business_date = '$d[5]'", '1', 'the date runs at the new time');
$started = $node->safe_psql('booking',
	"SELECT extract(epoch FROM started_at) FROM booking.checkout_runs WHERE business_date = '$d[5]'");
cmp_ok($started, '>=', $new_epoch, 'not before the new run time');

# SIGTERM to the launcher: it comes back (exit code 1, restarted), and only
# one worker serves the database.
my $launcher = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_booking checkout launcher'");
ok($launcher, 'the launcher runs');
$node->safe_psql('postgres', "SELECT pg_terminate_backend($launcher)");
my $back = 0;
for (1 .. 90)
{
	my $pid = $node->safe_psql('postgres', "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_booking checkout launcher'");
	if ($pid && $pid ne $launcher) { $back = 1; last; }
	sleep 1;
}
ok($back, 'the launcher is restarted after a SIGTERM');
is($node->safe_psql('booking', "SELECT count(*) FROM booking.checkout_runs WHERE error IS NULL GROUP BY business_date HAVING count(*) > 1"),
	'', 'no business date has two successful runs');

$node->stop;
done_testing();
