# Request tracing: the request id the adapter answers with (X-Request-Id,
# taken from the client or generated) is the backend's application_name
# while the request runs, so pg_stat_activity shows which request a backend
# serves, and a log_line_prefix with %a (as docker/postgres.Dockerfile sets)
# puts it on the server's log lines of slow and failed statements.  One
# request can be followed from the adapter's log into the server's.
use strict;
use warnings;
use lib 't';
use AdapterTest;
use POSIX ();
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = setup_node();
# The image's logging: prefix with %a, slow statements, no parameter values,
# no statement text of failures; nothing else (the test framework logs
# every statement by default).
$node->append_conf('postgresql.conf', q{
log_line_prefix = '%m [%p] app=%a '
log_statement = none
log_min_duration_statement = 300
log_parameter_max_length = 0
log_min_error_statement = fatal
});
$node->reload;
$node->safe_psql('postgres', q{INSERT INTO booking.rooms (name, location, capacity) VALUES ('Trace', 'HQ', 4)});
my $room = 0 + $node->safe_psql('postgres', q{SELECT id FROM booking.rooms WHERE name = 'Trace'});
my $uid = make_user($node, 'trace@example.com', 'user');
my $token = mint_jwt({ sub => "$uid", role => 'booking_user', exp => time + 3600 });
my $ad = start_adapter($node);
my $slot = { room_id => $room, title => 'trace', starts_at => '2031-02-01T09:00:00Z', ends_at => '2031-02-01T10:00:00Z' };

sub eventually
{
	my ($test, $seconds) = @_;
	my $deadline = time + $seconds;
	while (time < $deadline)
	{
		return 1 if $test->();
		usleep(50_000);
	}
	return 0;
}
sub server_log { return slurp_file($node->logfile); }

# --- a slow request: visible in pg_stat_activity while it waits, then in
# the server's log as a slow statement ---
my $locker = fork // die;
if ($locker == 0)
{
	$node->psql('postgres', 'BEGIN; LOCK TABLE booking.bookings IN EXCLUSIVE MODE; SELECT pg_sleep(1); COMMIT;');
	POSIX::_exit(0);    # the cluster belongs to the parent's END blocks
}
ok(eventually(sub { $node->safe_psql('postgres', q{SELECT count(*) FROM pg_locks WHERE relation = 'booking.bookings'::regclass AND granted AND mode = 'ExclusiveLock'}) == 1 }, 10),
	'the bookings table is locked');
my $client = fork // die;
if ($client == 0)
{
	local $ad->{http} = HTTP::Tiny->new(timeout => 30);
	my $r = http($ad, 'POST', '/bookings', $slot, $token, { 'X-Request-Id' => 'trace-slow-1' });
	POSIX::_exit($r->{status} == 201 ? 0 : 1);
}
my $seen = '';
ok(eventually(sub {
	$seen = $node->safe_psql('postgres', q{SELECT usename || ' ' || wait_event_type FROM pg_stat_activity WHERE application_name = 'trace-slow-1'});
	return $seen ne '';
}, 10), 'while it waits, pg_stat_activity shows the request id as application_name');
is($seen, 'booking_authenticator Lock', '... on the adapter\'s backend, waiting for the lock');
waitpid($client, 0);
is($?, 0, 'the slow booking succeeds');
waitpid($locker, 0);
ok(eventually(sub { server_log() =~ /app=trace-slow-1 LOG:  duration: \d+/ }, 5), 'the slow statement\'s log line names the request')
  or diag server_log();
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'trace-%'}), 0,
	'after the request the backend no longer carries its id');

# --- a failed statement (a clash), with the client's id and with a
# generated one ---
my $r = http($ad, 'POST', '/bookings', $slot, $token, { 'X-Request-Id' => 'trace-clash-1' });
is($r->{status}, 409, 'a clash');
ok(eventually(sub { server_log() =~ /app=trace-clash-1 ERROR:  room $room is already booked/ }, 5),
	'the failed statement\'s log line names the request');
$r = http($ad, 'POST', '/bookings', $slot, $token);
my $generated = $r->{headers}{'x-request-id'};
like($generated, qr/^[0-9a-f]{8}-[0-9a-f]{4}-/, 'without X-Request-Id the adapter makes one');
ok(eventually(sub { server_log() =~ /app=\Q$generated\E ERROR:/ }, 5), '... and the server\'s log line carries it');
my ($line) = grep { (json_of($_) // {})->{request_id} eq $generated } adapter_log_lines($ad);
is((json_of($line) // {})->{error_code}, 'BOOKING_CONFLICT', 'the adapter\'s log line of the same request');

# Negative control: a request the server had no reason to log is not in it.
http($ad, 'GET', '/rooms', undef, $token, { 'X-Request-Id' => 'trace-quiet-1' });
unlike(server_log(), qr/trace-quiet-1/, 'a fast, successful request leaves no server log line');
unlike(server_log(), qr/parameters: \$1/, 'no parameter value reaches the server log');
is(stop_adapter($ad), 0, 'the adapter stops cleanly');
$node->stop;
done_testing();
