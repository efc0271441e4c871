# Exactness of the shared-memory limiter: 1,000,000 random arrivals on a
# test-only clock (the at_ms argument), over five rules and 20 keys each, are
# compared with a brute-force oracle that keeps every admission ever made.
# Zero wrong decisions, and every Retry-After is tight: a dry run at
# now + wait is admitted, one millisecond earlier is denied.  The same
# oracle, told a wrong limit, must find wrong decisions (the test can fail).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $arrivals = $ENV{PGB_RL_ARRIVALS} // 1_000_000;

my $node = PostgreSQL::Test::Cluster->new('rl_exact');
$node->init;
$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_booking CASCADE');

# rule => [max_requests, window_ms]: about 1.3 arrivals per allowed request
# per key and window, so both answers are frequent.
my %rules = (p1 => [1, 200], p3 => [3, 600], p5 => [5, 1000], p10 => [10, 2000], p30 => [30, 6000]);
my $rules_sql = join(', ', map { "('$_', $rules{$_}[0], $rules{$_}[1])" } sort keys %rules);

# Gaps of 0..3 ms (many arrivals share a millisecond); the table is written
# in arrival order and read back in that order.
$node->safe_psql('postgres', qq{
SELECT setseed(0.4242);
CREATE TABLE rules (rule text, n integer, window_ms bigint);
INSERT INTO rules VALUES $rules_sql;
CREATE TABLE arrivals AS
SELECT a.seq, a.rule, r.n, r.window_ms, a.key, a.t
  FROM (SELECT g AS seq,
               (ARRAY['p1', 'p3', 'p5', 'p10', 'p30'])[1 + floor(random() * 5)::integer] AS rule,
               'key-' || floor(random() * 20)::integer AS key,
               (sum(floor(random() * 4)) OVER (ORDER BY g))::bigint AS t
          FROM generate_series(1, $arrivals) g) a
  JOIN rules r USING (rule)
 ORDER BY a.seq;
});

# One statement, one backend: a nested loop over the arrivals in order calls
# the limiter once per arrival and probes right after each denial.  Rows come
# back in the order they were decided (checked below), so the oracle replays
# exactly that order.
my $decisions = $node->safe_psql('postgres', q{
SELECT a.seq, a.rule, a.key, a.t, c.allowed::integer, c.retry_after_ms,
       CASE WHEN NOT c.allowed THEN
           (booking.rate_limit_check(a.rule, a.key, a.n, a.window_ms, a.t + c.retry_after_ms - 1, true)).allowed::integer
       END AS earlier,
       CASE WHEN NOT c.allowed THEN
           (booking.rate_limit_check(a.rule, a.key, a.n, a.window_ms, a.t + c.retry_after_ms, true)).allowed::integer
       END AS at_wait
  FROM (SELECT * FROM arrivals ORDER BY seq) a,
       LATERAL booking.rate_limit_check(a.rule, a.key, a.n, a.window_ms, a.t) c});
my @rows = split /\n/, $decisions;
is(scalar @rows, $arrivals, "$arrivals decisions returned");
my $in_order = 1;
for my $i (0 .. $#rows)
{
	$in_order = 0 unless (split /\|/, $rows[$i])[0] == $i + 1;
}
ok($in_order, 'decisions were made in arrival order');

# The oracle: every admission ever made, per rule and key.  A request at t
# is admitted iff fewer than N admissions lie in (t - T, t]; when denied,
# the earliest time it would be admitted is the (count - N + 1)-th newest
# admission in the window + T.
sub oracle
{
	my ($limits) = @_;
	my (%history, $wrong, $wrong_wait, $loose, $admitted);
	$wrong = $wrong_wait = $loose = $admitted = 0;
	for my $row (@rows)
	{
		my ($seq, $rule, $key, $t, $allowed, $wait, $earlier, $at_wait) = split /\|/, $row;
		my ($n, $window) = @{ $limits->{$rule} };
		my $h = $history{"$rule/$key"} //= [];
		my $in_window = 0;
		for (my $i = $#$h; $i >= 0 && $h->[$i] > $t - $window; $i--)
		{
			$in_window++;
		}
		my $expect = $in_window < $n ? 1 : 0;
		if ($expect)
		{
			push @$h, $t;
			$admitted++;
		}
		$wrong++ if $expect != $allowed;
		if (!$expect && !$allowed)
		{
			my $expected_wait = $h->[ @$h - $in_window + ($in_window - $n) ] + $window - $t;
			$wrong_wait++ if $wait != $expected_wait;
			$loose++ if $earlier ne '0' || $at_wait ne '1';
		}
	}
	return ($wrong, $wrong_wait, $loose, $admitted);
}

my ($wrong, $wrong_wait, $loose, $admitted) = oracle(\%rules);
my $denied = $arrivals - $admitted;
note "oracle: $admitted admitted, $denied denied";
cmp_ok($admitted, '>', $arrivals / 5, 'many arrivals were admitted');
cmp_ok($denied, '>', $arrivals / 5, 'many arrivals were denied');
is($wrong, 0, 'zero wrong decisions against the brute-force oracle');
is($wrong_wait, 0, 'every retry_after_ms equals the oracle\'s exact wait');
is($loose, 0, 'Retry-After is tight: admitted at now + wait, denied 1 ms earlier');

# Nothing was lost to eviction, and the counters agree with the oracle.
is($node->safe_psql('postgres',
		"SELECT sum(admitted) || ' ' || sum(denied) || ' ' || sum(evicted_forced)
		   FROM booking.rate_limit_stats() WHERE endpoint LIKE 'p%'"),
	"$admitted $denied 0", 'shared counters: admitted and denied as the oracle says, no forced eviction');

# Negative control: an oracle that believes p5 allows 4 disagrees.
my %wrong_rules = (%rules, p5 => [4, 1000]);
my ($control) = oracle(\%wrong_rules);
cmp_ok($control, '>', 0, "an oracle with a wrong limit finds $control wrong decisions (this test can fail)");

$node->stop;
done_testing();
