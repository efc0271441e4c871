# Events in commit order: a consumer that reads api.list_events(after_id)
# after the last id it saw never misses an event and never sees one twice,
# whatever order concurrent transactions commit in.
#
# Two databases on one node: "postgres" runs 1.1 (the outbox, published by
# the events publisher worker, which serves it), "old" runs 1.0 (ids handed
# out at insert).  The same scenarios run against both; on 1.0 the consumer
# must miss events, which shows the checks can fail.
use strict;
use warnings;
use lib 't';
use PgBookingTest;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $node = booking_node('outbox', "pg_booking.checkout_database = 'postgres'\n");
$node->safe_psql('postgres', 'CREATE DATABASE old');
$node->safe_psql('old', q{CREATE EXTENSION pg_booking VERSION '1.0' CASCADE});
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_booking events' AND datname = 'postgres'"),
	'the events publisher runs in the database it serves');

my $setup = q{
INSERT INTO booking.users (email, full_name, password_hash, role) VALUES ('ops@example.com', 'Ops', 'x', 'admin');
INSERT INTO booking.rooms (name, location, capacity) SELECT 'Room ' || g, 'HQ', 8 FROM generate_series(1, 20) g;
-- The writers' step: book a slot (a clash is a normal answer), sometimes cancel it.
CREATE FUNCTION t_book_or_cancel(room integer, day integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    b bigint;
BEGIN
    INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
    VALUES (room, 1, 'load', '2032-01-01 09:00+00'::timestamptz + day * interval '1 day',
            '2032-01-01 09:30+00'::timestamptz + day * interval '1 day')
    RETURNING id INTO b;
    IF random() < 0.3 THEN
        UPDATE booking.bookings SET status = 'cancelled' WHERE id = b;
    END IF;
EXCEPTION WHEN SQLSTATE 'PT409' THEN
    NULL;
END $$;
};
$node->safe_psql($_, $setup) for qw(postgres old);

# Every event id after $after, as a consumer reads them.
sub events_after
{
	my ($db, $after) = @_;
	my $ids = $node->safe_psql($db,
		"SELECT coalesce(string_agg(e ->> 'id', ',' ORDER BY (e ->> 'id')::bigint), '') "
		  . "FROM jsonb_array_elements(api.list_events(after_id => $after, lim => 500)) e");
	return $ids eq '' ? () : split(/,/, $ids);
}

sub book_sql
{
	my ($room, $day, $title) = @_;
	return "INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at) "
	  . "VALUES ($room, 1, '$title', '2031-01-01 09:00+00'::timestamptz + interval '$day days', "
	  . "'2031-01-01 10:00+00'::timestamptz + interval '$day days') RETURNING id";
}

sub event_of
{
	my ($db, $booking) = @_;
	return $node->safe_psql($db,
		"SELECT coalesce(max(id), 0) FROM booking.events WHERE entity = 'booking' AND entity_id = '$booking'");
}

# --- Two transactions commit out of order -------------------------------
# A writes first (its event is queued, or on 1.0 gets the smaller id) and
# commits last; a consumer reads after B's commit and resumes after the
# last id it saw.
sub out_of_order
{
	my ($db) = @_;
	my $a = $node->background_psql($db);
	my $b = $node->background_psql($db);
	$a->query_safe('BEGIN');
	my $booking_a = $a->query_safe(book_sql(1, 1, 'A'));
	$b->query_safe('BEGIN');
	my $booking_b = $b->query_safe(book_sql(2, 1, 'B'));
	$b->query_safe('COMMIT');
	$node->poll_query_until($db,
		"SELECT count(*) = 1 FROM booking.events WHERE entity = 'booking' AND entity_id = '$booking_b'");
	my @first = events_after($db, 0);
	my $last_seen = $first[-1];
	$a->query_safe('COMMIT');
	$a->quit;
	$b->quit;
	$node->poll_query_until($db,
		"SELECT count(*) = 1 FROM booking.events WHERE entity = 'booking' AND entity_id = '$booking_a'");
	my @next = events_after($db, $last_seen);
	my %seen = map { $_ => 1 } (@first, @next);
	return ($seen{ event_of($db, $booking_a) } ? 1 : 0, $seen{ event_of($db, $booking_b) } ? 1 : 0);
}

is_deeply([ out_of_order('postgres') ], [ 1, 1 ],
	'1.1: the consumer gets both events although the first writer committed last');
is_deeply([ out_of_order('old') ], [ 0, 1 ],
	'1.0 (negative control): the consumer misses the event that committed after a later id');

# --- Many writers, commits in random order, one consumer -----------------
# 8 clients book and cancel with a random pause before COMMIT, while a
# consumer reads after the last id it saw every few milliseconds.  At the end
# the consumer must have every event exactly once.
my $script = write_pgbench_script('outbox_writer', q{
\set room random(1, 20)
\set day random(1, 3000)
\set pause random(0, 20)
BEGIN;
SELECT t_book_or_cancel(:room, :day);
SELECT pg_sleep(:pause / 1000.0);
COMMIT;
});

sub hammer
{
	my ($db) = @_;
	my $start = $node->safe_psql($db, 'SELECT coalesce(max(id), 0) FROM booking.events');
	my ($out, $err);
	my $writers = IPC::Run::start(
		[ 'pgbench', '-n', '-c', 8, '-j', 2, '-T', 8, '-f', $script,
		  '-h', $node->host, '-p', $node->port, $db ],
		'>', \$out, '2>', \$err);
	my $consumer = $node->background_psql($db);
	my ($last, %count) = ($start);
	my $deadline = time() + 60;
	my $reads = 0;
	while ($writers->pumpable && time() < $deadline)
	{
		my $ids = $consumer->query_safe(
			"SELECT coalesce(string_agg(e ->> 'id', ',' ORDER BY (e ->> 'id')::bigint), '') "
			  . "FROM jsonb_array_elements(api.list_events(after_id => $last, lim => 500)) e");
		for my $id (split /,/, $ids) { $count{$id}++; $last = $id; }
		$reads++;
		$writers->pump_nb;
		usleep(3000);
	}
	$writers->finish;
	note "pgbench: " . ($out =~ /(number of transactions actually processed: \d+)/ ? $1 : $err);
	$node->safe_psql($db, 'SELECT booking.publish_events()') if $db eq 'postgres';
	# Drain what is left.
	for (1 .. 200)
	{
		my @more = events_after($db, $last);
		last unless @more;
		$count{$_}++ for @more;
		$last = $more[-1];
	}
	$consumer->quit;
	my @all = split /,/, $node->safe_psql($db,
		"SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM booking.events WHERE id > $start");
	my $missed = grep { !$count{$_} } @all;
	my $twice = grep { $count{$_} > 1 } keys %count;
	note "$db: " . scalar(@all) . " events, $reads reads, $missed missed, $twice seen twice";
	return (scalar(@all), $missed, $twice);
}

my ($total, $missed, $twice) = hammer('postgres');
cmp_ok($total, '>', 100, "1.1: the writers made events ($total)");
is($missed, 0, '1.1: the consumer missed no event');
is($twice, 0, '1.1: and saw none twice');
is($node->safe_psql('postgres', 'SELECT count(*) FROM booking.event_queue'), '0', '1.1: nothing left unpublished');
($total, $missed, $twice) = hammer('old');
cmp_ok($missed, '>', 0, "1.0 (negative control): the same consumer misses events ($missed of $total)");

# --- Every committed change has its event, and nothing else ---------------
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM booking.bookings b
	 WHERE NOT EXISTS (SELECT 1 FROM booking.events e WHERE e.entity = 'booking' AND e.entity_id = b.id::text
	                      AND e.kind = 'booking.created')}), '0', 'every committed booking has its created event');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM booking.events e
	 WHERE e.entity = 'booking' AND NOT EXISTS (SELECT 1 FROM booking.bookings b WHERE b.id::text = e.entity_id)}),
	'0', 'no event names a booking that was never committed');

# --- The publisher wakes at commit ----------------------------------------
# Without a wake-up it looks once a second; ten single commits, each seen
# published well within that, show the latch works.
my $slow = 0;
for my $i (1 .. 10)
{
	my $id = $node->safe_psql('postgres', book_sql(3 + $i % 10, 5000 + $i, 'wake'));
	my $t0 = time();
	$node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM booking.events WHERE entity = 'booking' AND entity_id = '$id'")
	  or last;
	$slow++ if time() - $t0 > 0.5;
}
cmp_ok($slow, '<=', 2, "committed events are published at once, not at the next poll ($slow of 10 slow)");

$node->stop;
done_testing();
