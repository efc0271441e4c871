# Server-sent events in commit order: with the events publisher running, a
# stream delivers every event exactly once although two transactions commit
# out of id order, and a client resuming with Last-Event-ID gets exactly
# the events after it.
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = setup_node();
# Let the events publisher serve the test database.
$node->append_conf('postgresql.conf', "pg_booking.checkout_database = 'postgres'\n");
$node->reload;
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_booking events'"),
	'the events publisher runs');
my $ad = start_adapter($node);
my $admin_id = make_user($node, 'admin@example.com', 'admin');
my $admin = token_for($ad, 'admin@example.com', 'admin');
$node->safe_psql('postgres', q{INSERT INTO booking.rooms (name, location, capacity) VALUES ('One', 'HQ', 4), ('Two', 'HQ', 4)});

sub book_sql
{
	my ($room, $title) = @_;
	return "INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at) "
	  . "SELECT r.id, $admin_id, '$title', '2031-03-01 09:00+00', '2031-03-01 10:00+00' FROM booking.rooms r "
	  . "WHERE r.name = '$room' RETURNING id";
}

sub published
{
	my ($booking) = @_;
	return $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM booking.events WHERE entity = 'booking' AND entity_id = '$booking'");
}

my $start = $node->safe_psql('postgres', 'SELECT coalesce(max(id), 0) FROM booking.events');
my $sse = $PostgreSQL::Test::Utils::tmp_check . '/sse_order.txt';
my $curl = IPC::Run::start([ 'curl', '-sN', '--max-time', '8', '-H', 'Accept: text/event-stream',
		'-H', "Authorization: Bearer $admin", "$ad->{url}/events?after_id=$start" ], '>', $sse);
usleep(500_000);

# A writes first and commits last.
my $ta = $node->background_psql('postgres');
my $tb = $node->background_psql('postgres');
$ta->query_safe('BEGIN');
my $booking_a = $ta->query_safe(book_sql('One', 'first written'));
$tb->query_safe('BEGIN');
my $booking_b = $tb->query_safe(book_sql('Two', 'second written'));
$tb->query_safe('COMMIT');
ok(published($booking_b), 'the second writer committed first and is published');
usleep(300_000);
$ta->query_safe('COMMIT');
ok(published($booking_a), 'then the first');
$ta->quit;
$tb->quit;
$curl->finish;

my @sent = (slurp_file($sse) =~ /^id: (\d+)\nevent: booking\.created\ndata: \{[^\n]*"entity_id":"(\d+)"/mg);
my %entity_of_id = @sent;
my @ids = map { $sent[2 * $_] } 0 .. $#sent / 2;
is_deeply([ sort { $a <=> $b } values %entity_of_id ], [ sort { $a <=> $b } ($booking_a, $booking_b) ],
	'the stream sent both bookings\' events') or diag slurp_file($sse);
is(scalar(grep { $ids[$_] <= $ids[$_ - 1] } 1 .. $#ids), 0, 'in increasing id order');
is(scalar(@ids), 2, 'each once');

# Resume after the first: exactly the second, once.
my ($out, $err) = ('', '');
IPC::Run::run([ 'curl', '-sN', '--max-time', '2', '-H', 'Accept: text/event-stream',
		'-H', "Last-Event-ID: $ids[0]", '-H', "Authorization: Bearer $admin", "$ad->{url}/events" ],
	'>', \$out, '2>', \$err);
my @resumed = ($out =~ /^id: (\d+)$/mg);
is_deeply(\@resumed, [ $ids[1] ], 'Last-Event-ID resumes with exactly the events after it') or diag $out;

stop_adapter($ad);
$node->stop;
done_testing();
