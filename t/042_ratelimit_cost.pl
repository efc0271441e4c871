# Units at once under concurrency (issue 9): 8 clients charge random costs
# (1..5 units) of one key against "at most 60 units in 10 minutes" for 3 s;
# the units admitted (recorded by the clients in a table) never exceed 60,
# and the key is filled (at least 56: a request of up to 5 may be refused
# when fewer are left).  Negative control: the same hammer against a racy
# check-then-record version in SQL overshoots, so the detector can fail.
use strict;
use warnings;
use lib 't';
use PgBookingTest;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = booking_node('rl_cost', "max_connections = 40\n");
$node->safe_psql('postgres', q{
CREATE TABLE admitted (limiter text, units integer);
-- The racy limiter: reads the units so far, then records, with no lock.
CREATE FUNCTION racy_charge(cost integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce((SELECT sum(units) FROM admitted WHERE limiter = 'racy'), 0) + cost > 60 THEN
        RETURN false;
    END IF;
    PERFORM pg_sleep(0.001);
    INSERT INTO admitted VALUES ('racy', cost);
    RETURN true;
END $$;
});
my $script = write_pgbench_script('rl_cost', q{
\set c random(1, 5)
INSERT INTO admitted SELECT 'shm', :c FROM booking.rate_limit_charge('cost_hammer', 'one-key', 60, 600000, :c) d WHERE d.allowed;
});
run_pgbench($node, $script, 8, 3);
my ($units, $requests) = split /\|/, $node->safe_psql('postgres',
	"SELECT coalesce(sum(units), 0), count(*) FROM admitted WHERE limiter = 'shm'");
note "shared-memory limiter: $units units in $requests admitted requests";
cmp_ok($units, '<=', 60, 'never more than 60 units admitted');
cmp_ok($units, '>=', 56, 'and the key was filled');

my $racy = write_pgbench_script('rl_cost_racy', q{
\set c random(1, 5)
SELECT racy_charge(:c);
});
run_pgbench($node, $racy, 8, 3);
my $racy_units = $node->safe_psql('postgres', "SELECT coalesce(sum(units), 0) FROM admitted WHERE limiter = 'racy'");
note "racy limiter: $racy_units units";
cmp_ok($racy_units, '>', 60, 'control: the racy version overshoots, the detector sees it');

$node->stop;
done_testing();
