# Settings: --help lists them; a missing or short JWT secret refuses to start.
use strict;
use warnings;
use PostgreSQL::Test::Utils;
use Test::More;

my $bin = $ENV{ADAPTER_BIN} or die 'ADAPTER_BIN is not set';
delete $ENV{ADAPTER_JWT_SECRET};
my ($out, $err);
my $ok = IPC::Run::run([ $bin, '--help' ], '>', \$out, '2>', \$err);
ok($ok, '--help exits 0');
like($out, qr/--breaker-failures\s+ADAPTER_BREAKER_FAILURES/, '--help lists flags and variables');
like($out, qr/--pool-size/, '--help lists the pool size');
like($out, qr/\(default "dbname=booking user=booking_authenticator"\)/, '--help shows the whole default connection string');
$ok = IPC::Run::run([ $bin ], '>', \$out, '2>', \$err);
ok(!$ok, 'no secret: refuses to start');
like($err, qr/JWT secret is missing/, 'no secret: a clear message');
$ok = IPC::Run::run([ $bin, '--jwt-secret=short' ], '>', \$out, '2>', \$err);
ok(!$ok, 'short secret: refuses to start');
like($err, qr/shorter than 32 bytes/, 'short secret: a clear message');
$ok = IPC::Run::run([ $bin, '--jwt-secret=' . ('x' x 40), '--no-such=1' ], '>', \$out, '2>', \$err);
ok(!$ok && $err =~ /unknown setting/, 'unknown flag refused');
$ok = IPC::Run::run([ $bin, '--jwt-secret=' . ('x' x 40), '--breaker-mode=sometimes' ], '>', \$out, '2>', \$err);
ok(!$ok && $err =~ /breaker mode/, 'bad breaker mode refused');
done_testing();
