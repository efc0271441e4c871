# A memcheck run of the adapter (the plain build) over a short HTTP session:
# no definite leaks, no invalid reads or writes.
use strict;
use warnings;
use lib 't';
use AdapterTest;
use PostgreSQL::Test::Utils;
use Test::More;

my ($valgrind) = grep { -x } map { "$_/valgrind" } split /:/, $ENV{PATH};
$valgrind //= '';
ok($valgrind, 'valgrind is installed') or BAIL_OUT('valgrind is required (scripts/deps.sh installs it)');
(my $plain = $ENV{ADAPTER_BIN}) =~ s/-asan$//;
local $ENV{ADAPTER_BIN} = $plain;

my $node = setup_node();
my $uid = make_user($node, 'admin@example.com', 'admin');
my $vlog = $PostgreSQL::Test::Utils::tmp_check . '/valgrind.log';
my $a = start_adapter($node, start_timeout => 60,
	wrapper => [ $valgrind, '--leak-check=full', '--errors-for-leak-kinds=definite',
		'--error-exitcode=99', "--log-file=$vlog" ]);
my $admin = token_for($a, 'admin@example.com', 'admin');
my @statuses;
push @statuses, http($a, 'POST', '/rooms', { name => 'V', location => 'X', capacity => 2, amenities => ['a'] }, $admin)->{status};
push @statuses, http($a, 'GET', '/rooms', undef, $admin)->{status};
push @statuses, http($a, 'POST', '/bookings', { room_id => 1, starts_at => '2030-01-01T09:00:00Z',
	ends_at => '2030-01-01T10:00:00Z', title => 'v' }, $admin)->{status};
push @statuses, http($a, 'POST', '/bookings', '{bad json', $admin)->{status};
push @statuses, http($a, 'GET', '/users/me', undef, 'bad.token.here')->{status};
push @statuses, http($a, 'GET', '/nope')->{status};
push @statuses, http($a, 'GET', '/metrics')->{status};
push @statuses, http($a, 'GET', '/openapi.json')->{status};
push @statuses, http($a, 'POST', '/rpc/no_such', {}, $admin)->{status};
is_deeply(\@statuses, [ 201, 200, 201, 400, 401, 404, 200, 200, 404 ], 'a short session under valgrind');
is(stop_adapter($a), 0, 'valgrind: exit 0 (no errors, no definite leaks)');
my $report = slurp_file($vlog);
like($report, qr/definitely lost: 0 bytes|All heap blocks were freed/, 'no definite leaks')
  or diag($report);
like($report, qr/ERROR SUMMARY: 0 errors/, 'no memory errors') or diag($report);
done_testing();
