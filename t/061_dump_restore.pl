# Backup and restore (issue 8): a realistic database, made through the api,
# dumped with scripts/backup.sh (pg_dump -Fc) and restored with
# scripts/restore.sh into a second, empty cluster, compares equal table by
# table, row by row; the invariants hold on the restored side; the business
# triggers did not run again during the restore; new bookings and
# reservations work there with ids that continue.  Negative control: the same
# dump restored with plain pg_restore (triggers firing) is caught.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use FindBin;
use lib $FindBin::Bin;
use PgBookingTest;
use PgBookingData;

my $root = $ENV{TESTDIR} or die 'TESTDIR is not set';
my $preload = q{
shared_preload_libraries = 'pg_booking'
pg_booking.jwt_secret = 'tap-secret-0123456789abcdef0123456789abcdef'
timezone = 'UTC'
};

# The source: the data lives in "shop" (not "booking": the checkout worker
# would run there on its own and change rows under the comparison).
my $src = booking_node('source', 'timezone = UTC');
$src->safe_psql('postgres', 'CREATE DATABASE shop');
$src->safe_psql('shop', 'CREATE EXTENSION pg_booking CASCADE');
load_realistic_data($src, 'shop');
# An overbooking allowance and group blocks (1.1 only, so not in the shared
# data the upgrade test loads into 1.0): one block with a group stay drawn
# from it, one released.
$src->safe_psql('shop', q{
SELECT api.set_overbooking((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'double', percent => 34);
SELECT api.create_block((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'double', 'ACME', to_char(current_date + 20, 'YYYY-MM-DD'),
                        to_char(current_date + 22, 'YYYY-MM-DD'), 2, to_char(current_date + 15, 'YYYY-MM-DD'));
SELECT api.create_block((SELECT id FROM booking.hotels WHERE name = 'Alpine'), 'single', 'TOUR', to_char(current_date + 3, 'YYYY-MM-DD'),
                        to_char(current_date + 4, 'YYYY-MM-DD'), 1, to_char(current_date + 1, 'YYYY-MM-DD'));
SELECT set_config('request.jwt.claims', json_build_object('sub', (SELECT id FROM booking.users WHERE email = 'uma@example.org')::text,
                                                          'role', 'booking_user')::text, false);
SELECT api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'double', 'Acme delegate',
                              to_char(current_date + 20, 'YYYY-MM-DD'), 2, group_code => 'ACME') ? 'block_id';
SELECT set_config('request.jwt.claims', '', false);
SELECT booking.release_blocks(current_date + 1);
});
is($src->safe_psql('shop', q{SELECT (SELECT count(*) FROM booking.reservations WHERE block_id IS NOT NULL) || ' '
  || (SELECT count(*) FROM booking.block_releases) || ' ' || (SELECT count(*) FROM booking.inventory WHERE allowance > 0)}),
	'1 1 31', 'source: a group stay drawn from a block, a released block, nights with an allowance');
my $src_fp = table_fingerprints($src, 'shop');

# The triggers that would fire during a restore (session_replication_role =
# replica): ENABLE ALWAYS and ENABLE REPLICA ones.  Only the merge of
# restored rate-limit rules may; a business trigger there would run again
# against every restored row.
my $ext_tables = q{(SELECT d.objid FROM pg_depend d
  WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e'
    AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_booking'))};
is($src->safe_psql('shop', qq{SELECT string_agg(tgrelid::regclass || '.' || tgname, ', ')
  FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'A' AND tgrelid IN $ext_tables}),
	'', 'no trigger of the extension is ENABLE ALWAYS');
is($src->safe_psql('shop', qq{SELECT string_agg(tgrelid::regclass || '.' || tgname, ', '
                                       ORDER BY tgrelid::regclass::text COLLATE "C", tgname)
  FROM pg_trigger WHERE NOT tgisinternal AND tgenabled IN ('A', 'R') AND tgrelid IN $ext_tables}),
	'booking.rate_limits.rate_limits_restore, booking.rate_limits_deleted.rate_limits_deleted_restore',
	'the only triggers that fire during a restore merge rate-limit rules');
ok($src->safe_psql('shop', qq{SELECT count(*) FROM pg_trigger
  WHERE NOT tgisinternal AND tgenabled = 'O' AND tgrelid IN $ext_tables}) > 10,
	'the business triggers are ordinary (ENABLE ORIGIN) ones');

# Every status and kind of row the test means to carry over is there.
is($src->safe_psql('shop', q{SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM booking.reservations}),
	'cancelled,checked_in,completed,confirmed,no_show', 'source: reservations in every status');
is($src->safe_psql('shop', q{SELECT string_agg(DISTINCT status, ',' ORDER BY status) FROM booking.bookings}),
	'cancelled,completed,confirmed', 'source: bookings confirmed, cancelled and completed');
is($src->safe_psql('shop', q{SELECT string_agg(DISTINCT role, ',' ORDER BY role) FROM booking.users}),
	'admin,auditor,facility_manager,moderator,service_account,user', 'source: users of every role');
is($src->safe_psql('shop', q{SELECT string_agg(endpoint, ',' ORDER BY endpoint) FROM booking.rate_limits WHERE NOT seeded}),
	'create_booking,login,register,search_availability', 'source: edited and added rate-limit rules are not seeded');
is($src->safe_psql('shop', q{SELECT string_agg(endpoint, ',' ORDER BY endpoint) FROM booking.rate_limits_deleted}),
	'create_reservation', 'source: the deleted default rule is remembered');

# Backup with the script of make backup.
my $backups = "${PostgreSQL::Test::Utils::tmp_check}/backups";
my %env = (PGHOST => $src->host, PGPORT => $src->port, DB => 'shop', BACKUP_DIR => $backups);
my ($out, $err);
my $ok = IPC::Run::run([ 'env', (map { "$_=$env{$_}" } keys %env), 'bash', "$root/scripts/backup.sh" ],
	'>', \$out, '2>', \$err);
ok($ok, 'scripts/backup.sh succeeded') or diag "$out\n$err";
my ($dump) = (split /\n/, $out)[-1];
like($dump, qr{/shop-\d{8}T\d{6}Z\.dump$}, 'the dump has a timestamped name');
ok(-s $dump, 'the dump file exists');
is(sprintf('%o', (stat $backups)[2] & 07777), '700', 'the backup folder is readable by its owner only');
is(sprintf('%o', (stat $dump)[2] & 07777), '600', 'the dump is readable by its owner only');

# The seeded rate-limit rules are not in the dump; the edited ones are.
my $rl = `pg_restore --data-only --table=rate_limits -f - '$dump'`;
my @rl = map { (split /\t/)[0] } grep { /^[a-z_]+\t/ } split /\n/, $rl;
is(join(',', sort @rl), 'create_booking,login,register,search_availability',
	'the dump holds the edited and added rate-limit rules, not the seeded defaults');

# Restore with the script of make restore into a cluster that has never seen
# the extension (roles and all come from the dump and CREATE EXTENSION).
my $dst = PostgreSQL::Test::Cluster->new('restored');
$dst->init;
$dst->append_conf('postgresql.conf', $preload);
$dst->start;
%env = (PGHOST => $dst->host, PGPORT => $dst->port, DB => 'shop', FILE => $dump);
my $restore = [ 'env', (map { "$_=$env{$_}" } keys %env), 'bash', "$root/scripts/restore.sh" ];
$ok = IPC::Run::run($restore, '>', \$out, '2>', \$err);
ok($ok, 'scripts/restore.sh succeeded') or diag "$out\n$err";

my $dst_fp = table_fingerprints($dst, 'shop');
my ($rows, $tables) = (0, 0);
for my $t (sort keys %$src_fp)
{
	is($dst_fp->{$t}, $src_fp->{$t}, "$t: identical after restore ($src_fp->{$t})")
	  or diag "$t is not dumped or not restored as it was: register it with pg_extension_config_dump";
	if ($src_fp->{$t} =~ /^(\d+) [0-9a-f]{32}$/)
	{
		$rows += $1;
		$tables++;
	}
}
ok($rows > 200, "compared $rows rows in $tables tables, row by row");
note "rows compared: $rows in $tables tables";

# The invariants, on the restored side.
sub invariants
{
	my ($node, $db) = @_;
	my $overlaps = occupying_overlaps_sql($node, $db);
	return $node->safe_psql($db, qq{SELECT (SELECT count(*) FROM booking.inventory_violations()) || ' '
	  || (SELECT count(*) FROM booking.analytics_check()) || ' ' || ($overlaps)});
}
is(invariants($dst, 'shop'), '0 0 0',
	'restored: inventory_violations(), analytics_check() and overlapping bookings are all empty');
is($dst->safe_psql('shop', q{SELECT count(*) FROM booking.rate_limits WHERE endpoint = 'create_reservation'}), '0',
	'restored: the default rule deleted before the backup is not back');

# A second restore into the same name is refused and changes nothing.
$ok = IPC::Run::run($restore, '>', \$out, '2>', \$err);
ok(!$ok, 'restoring into an existing database is refused');
like($err, qr/already exists; nothing restored/, 'with a clear message');
is_deeply(table_fingerprints($dst, 'shop'), $dst_fp, 'and the existing database is untouched');

# New work on the restored side: the rules see the restored rows, and ids
# continue after the restored ones.
my %max = map { $_ => $src->safe_psql('shop', "SELECT max(id) FROM booking.$_") }
  qw(users bookings events reviews hotels rooms checkout_runs refresh_tokens user_availability);
my $uma = act_sql('uma@example.org');
my $new_booking = $dst->safe_psql('shop', qq{SET timezone = UTC; $uma
  SELECT (api.create_booking((SELECT id FROM booking.rooms WHERE name = 'Aquarium'),
          to_char(current_date + 1, 'YYYY-MM-DD') || 'T14:00:00Z', to_char(current_date + 1, 'YYYY-MM-DD') || 'T15:00:00Z',
          'After the restore')) ->> 'id'});
cmp_ok($new_booking, '>', $max{bookings}, "a new booking gets an id after the restored ones ($new_booking > $max{bookings})");
my ($r, $o, $e) = $dst->psql('shop', qq{SET timezone = UTC; $uma
  SELECT api.create_booking((SELECT id FROM booking.rooms WHERE name = 'Aquarium'),
         to_char(current_date + 1, 'YYYY-MM-DD') || 'T09:00:00Z', to_char(current_date + 1, 'YYYY-MM-DD') || 'T09:30:00Z', 'Clash')});
like($e, qr/BOOKING_CONFLICT/, 'a booking over a restored one is refused (the conflict check sees restored rows)');
($r, $o, $e) = $dst->psql('shop', qq{$uma
  SELECT api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'suite', 'Late guest',
         to_char(current_date + 1, 'YYYY-MM-DD'), 1)});
like($e, qr/NO_AVAILABILITY/, 'the suite sold out before the backup is still sold out');
my $res = $dst->safe_psql('shop', qq{$uma
  SELECT (api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'double', 'New guest',
          to_char(current_date + 20, 'YYYY-MM-DD'), 2)) ->> 'status'});
is($res, 'confirmed', 'a new reservation works on the restored side');
$dst->safe_psql('shop', qq{SELECT api.register('new\@example.org', 'pw-new-01234', 'New person');
  $uma SELECT api.login('uma\@example.org', 'pw-user-0123');
  SELECT api.set_my_availability('[]');});
settle_events($dst, 'shop');
for my $t (qw(users events refresh_tokens))
{
	my $min_new = $dst->safe_psql('shop', "SELECT min(id) FROM booking.$t WHERE id > $max{$t}");
	my $collide = $dst->safe_psql('shop', "SELECT count(*) - count(DISTINCT id) FROM booking.$t");
	ok($min_new ne '' && $collide == 0, "$t: new rows continue after id $max{$t} (next $min_new), no duplicate id");
}
is($dst->safe_psql('shop', q{SELECT count(*) FROM booking.events WHERE kind LIKE 'reservation.%'
  AND entity_id = (SELECT id::text FROM booking.reservations WHERE guest_name = 'New guest')}), '1',
	'the new reservation wrote its event (the event triggers work after the restore)');
is(invariants($dst, 'shop'), '0 0 0', 'restored, after new work: the invariants still hold');
# The sequences' next values, by name, continue for every identity.
for my $t (sort keys %max)
{
	my $next = $dst->safe_psql('shop',
		"SELECT nextval(pg_get_serial_sequence('booking.$t', 'id'))");
	cmp_ok($next, '>', $max{$t} || 0, "booking.$t: the identity continues after the restored ids");
}

# Negative control: the same dump restored the naive way, triggers firing
# (no session_replication_role), must be caught by the checks above.
$dst->safe_psql('postgres', 'CREATE DATABASE naive TEMPLATE template0');
IPC::Run::run([ 'pg_restore', '-h', $dst->host, '-p', $dst->port, '-d', 'naive', $dump ],
	'>', \$out, '2>', \$err);
note "plain pg_restore said: " . join(' | ', grep { /ERROR/ } split /\n/, $err);
my $naive_fp = table_fingerprints($dst, 'naive');
my @differ = grep { ($naive_fp->{$_} // '') ne $src_fp->{$_} } sort keys %$src_fp;
my $naive_inv = invariants($dst, 'naive');
note "naive restore: tables differing: @differ; invariants (inventory, analytics, overlaps): $naive_inv";
ok(@differ > 0 || $naive_inv ne '0 0 0',
	'negative control: a restore with the triggers firing is detected');
# Two damages the triggers do, each caught: reservations taking their
# nights again (the sold-out suite refuses its own reservation), and rooms
# starting their counters again.
ok((grep { $_ eq 'booking.reservations' } @differ),
	'negative control: reservations taking their nights again are detected');
ok((grep { $_ eq 'booking.room_booking_counts' } @differ),
	'negative control: counters counted again are detected');

# A backup taken while clients write: pg_dump reads every table in one
# snapshot, so the restored reservations, inventory, bookings and counters
# agree with each other although hundreds of changes ran during the dump.
# Negative control: the same two tables copied in two transactions under the
# same load disagree, and the same check sees it.
$src->safe_psql('postgres', 'CREATE DATABASE busy');
$src->safe_psql('busy', q{
CREATE EXTENSION pg_booking CASCADE;
UPDATE booking.rate_limits SET max_requests = 1000;
INSERT INTO booking.hotels (name, location) VALUES ('H1', 'Porto');
INSERT INTO booking.inventory (hotel_id, room_type, night, total, available)
SELECT 1, t, n::date, 3, 3 FROM unnest(ARRAY['double', 'suite']) t,
       generate_series(date '2099-07-01', date '2099-07-14', interval '1 day') n;
INSERT INTO booking.rooms (name, location, capacity, buffer_after_minutes)
SELECT 'Room ' || i, 'HQ', 4, 10 * (i % 2) FROM generate_series(1, 3) i;
INSERT INTO booking.users (email, full_name, password_hash)
SELECT 'busy' || i || '@example.com', 'Busy ' || i, 'x' FROM generate_series(1, 8) i;
CREATE FUNCTION public.hammer(client integer, op integer, arrival integer, len integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    a text := to_char(date '2099-07-01' + arrival, 'YYYY-MM-DD');
    s timestamptz := timestamptz '2099-07-01 08:00Z' + make_interval(hours => arrival * 3 + len);
    victim uuid;
    b bigint;
BEGIN
    PERFORM set_config('request.jwt.claims', json_build_object('sub', client::text, 'role', 'booking_user')::text, true);
    IF op < 35 THEN
        PERFORM api.create_reservation(1, CASE WHEN op % 2 = 0 THEN 'suite' ELSE 'double' END, 'Guest', a, len);
    ELSIF op < 50 THEN
        SELECT id INTO victim FROM booking.reservations WHERE status = 'confirmed' ORDER BY random() LIMIT 1;
        IF victim IS NOT NULL THEN
            PERFORM set_config('request.jwt.claims', json_build_object('sub', (SELECT user_id FROM booking.reservations
                WHERE id = victim)::text, 'role', 'booking_user')::text, true);
            PERFORM api.cancel_reservation(victim);
        END IF;
    ELSIF op < 85 THEN
        PERFORM api.create_booking(1 + op % 3, to_json(s) #>> '{}', to_json(s + interval '1 hour') #>> '{}', 'Busy');
    ELSE
        SELECT id INTO b FROM booking.bookings WHERE status = 'confirmed' AND user_id = client ORDER BY random() LIMIT 1;
        IF b IS NOT NULL THEN
            PERFORM api.cancel_booking(b);
        END IF;
    END IF;
EXCEPTION WHEN SQLSTATE 'PT409' OR SQLSTATE 'PT422' OR SQLSTATE 'PT404' THEN
    NULL;    -- sold out, clash, restriction: the race is the point
END
$$;
});
my $hammer = write_pgbench_script('backup_hammer', <<'SQL');
\set client random(1, 8)
\set op random(0, 99)
\set arrival random(0, 10)
\set len random(1, 3)
SELECT hammer(:client, :op, :arrival, :len);
SQL
my ($bench_out, $bench_err);
my $bench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', 4, '-j', 2, '-T', 90, '-f', $hammer, '-h', $src->host, '-p', $src->port, 'busy' ],
	'>', \$bench_out, '2>', \$bench_err);
# The load runs until the copies below are taken (at most 90 s), however slow the machine.
my $changes = q{SELECT count(*) FROM booking.reservations};
sleep 3;
%env = (PGHOST => $src->host, PGPORT => $src->port, DB => 'busy', BACKUP_DIR => $backups);
$ok = IPC::Run::run([ 'env', (map { "$_=$env{$_}" } keys %env), 'bash', "$root/scripts/backup.sh" ],
	'>', \$out, '2>', \$err);
ok($ok, 'a backup while 4 clients book and reserve') or diag $err;
my ($busy_dump) = (split /\n/, $out)[-1];
# The negative control's copies: inventory now, reservations a moment later.
$src->safe_psql('busy', 'CREATE TABLE copy_inventory AS SELECT * FROM booking.inventory');
sleep 1;
$src->safe_psql('busy', 'CREATE TABLE copy_reservations AS SELECT * FROM booking.reservations');
$bench->signal('INT');
$bench->finish;
note 'during the backup and the copies the clients made '
  . $src->safe_psql('busy', $changes) . ' reservations and '
  . $src->safe_psql('busy', 'SELECT count(*) FROM booking.bookings') . ' bookings';
my $disagree = $src->safe_psql('busy', q{
WITH held AS (
    SELECT r.hotel_id, r.room_type, n::date AS night, count(*) AS held
      FROM copy_reservations r CROSS JOIN LATERAL generate_series(r.arrival_date, r.held_until - 1, interval '1 day') n
     WHERE r.held_until > r.arrival_date GROUP BY 1, 2, 3)
SELECT count(*) FROM copy_inventory i LEFT JOIN held h USING (hotel_id, room_type, night)
 WHERE i.available <> i.total - coalesce(h.held, 0)});
cmp_ok($disagree, '>', 0, "negative control: tables copied in two transactions under load disagree ($disagree nights)");

%env = (PGHOST => $dst->host, PGPORT => $dst->port, DB => 'busy', FILE => $busy_dump);
$ok = IPC::Run::run([ 'env', (map { "$_=$env{$_}" } keys %env), 'bash', "$root/scripts/restore.sh" ],
	'>', \$out, '2>', \$err);
ok($ok, 'the backup taken under load restores (the script checks the invariants)') or diag "$out\n$err";
my $busy_rows = $dst->safe_psql('busy', q{SELECT (SELECT count(*) FROM booking.reservations) || ' reservations, '
  || (SELECT count(*) FROM booking.bookings) || ' bookings, ' || (SELECT count(*) FROM booking.events)
  || ' + ' || (SELECT count(*) FROM booking.event_queue) || ' queued events'});
note "restored from the backup under load: $busy_rows";
is(invariants($dst, 'busy'), '0 0 0',
	'restored from a backup under load: inventory, counters and bookings agree (one snapshot)');

done_testing();
