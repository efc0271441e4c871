# PgBookingData — shared by the lifecycle tests (t/060_upgrade.pl,
# t/061_dump_restore.pl): a realistic database made through the api
# functions, and fingerprints of an extension's tables and catalog objects
# to compare two databases.
package PgBookingData;

use strict;
use warnings;
use Exporter 'import';
use Test::More;

our @EXPORT = qw(load_realistic_data settle_events extension_tables table_columns
  table_fingerprints table_rows extension_catalog act_sql occupying_overlaps_sql);

# The claims of a user of the database, by email, as the adapter would set
# them from a verified token (psql acts as that user; RLS is not what these
# tests are about, the business rules are).
sub act_sql
{
	my ($email) = @_;
	# In a DO block: nothing is printed, so safe_psql returns only the answer.
	return defined $email
	  ? qq{DO \$\$ BEGIN PERFORM set_config('request.jwt.claims', (SELECT json_build_object('sub', id::text,
	         'role', 'booking_' || role, 'iat', ceil(extract(epoch FROM now()))::bigint,
	         'exp', ceil(extract(epoch FROM now()))::bigint + 600)::text
	         FROM booking.users WHERE email = '$email'), false); END \$\$;}
	  : q{SELECT set_config('request.jwt.claims', '', false);};
}

# Days from today (UTC) as a date, and an instant at hh:mm UTC on that day.
my $helpers = q{
SET timezone = 'UTC';
SET client_min_messages = warning;
CREATE FUNCTION pg_temp.d(days integer) RETURNS text LANGUAGE sql
  AS $$ SELECT to_char(current_date + days, 'YYYY-MM-DD') $$;
CREATE FUNCTION pg_temp.at(days integer, hhmm text) RETURNS text LANGUAGE sql
  AS $$ SELECT to_char(current_date + days, 'YYYY-MM-DD') || 'T' || hhmm || ':00Z' $$;
};

# Everything the engine holds, made the way users and staff make it: users
# of every role (one deactivated), refresh tokens (one refreshed, some
# revoked), rooms with and without buffers (one deactivated after it was
# booked), single, recurring (all-or-nothing and skip-conflicts),
# rescheduled, cancelled and completed bookings, published availability,
# hotels with inventory and stay restrictions, reservations in every status
# (one changed), two checkout runs, reviews (edited, flagged, hidden) with
# votes and flags, edited, added and deleted rate-limit rules (one default
# left as seeded), and the events all of this wrote.
sub realistic_data_sql
{
	my $sql = $helpers;
	$sql .= q{
-- Rate-limit rules: three defaults edited, one deleted, one left as seeded, one rule added.
UPDATE booking.rate_limits SET max_requests = 1000 WHERE endpoint IN ('login', 'register');
UPDATE booking.rate_limits SET max_requests = 200, exempt_roles = '{admin,service_account,facility_manager}'
 WHERE endpoint = 'create_booking';
INSERT INTO booking.rate_limits (endpoint, max_requests, window_length, key_kind, exempt_roles)
VALUES ('search_availability', 60, '1 minute', 'user', '{service_account}');
DELETE FROM booking.rate_limits WHERE endpoint = 'create_reservation';
};
	my @people = (
		[ 'uma@example.org',   'user' ],
		[ 'ulf@example.org',   'user' ],
		[ 'una@example.org',   'user' ],
		[ 'ada@example.org',   'admin' ],
		[ 'fay@example.org',   'facility_manager' ],
		[ 'aldo@example.org',  'auditor' ],
		[ 'mona@example.org',  'moderator' ],
		[ 'graf@example.org',  'service_account' ],
		[ 'leo@example.org',   'user' ]);
	for my $p (@people)
	{
		my ($email, $role) = @$p;
		$sql .= qq{SELECT api.register('$email', 'pw-$role-0123', 'Person $email');\n};
		$sql .= qq{SELECT api.update_user((SELECT id FROM booking.users WHERE email = '$email'), role => '$role');\n}
		  if $role ne 'user';
	}
	# Sessions: logins (refresh tokens), a refresh, a logout, a deactivation.
	$sql .= q{
SELECT api.login('uma@example.org', 'pw-user-0123');
SELECT api.login('ulf@example.org', 'pw-user-0123');
SELECT api.refresh((api.login('ada@example.org', 'pw-admin-0123')) ->> 'refresh_token');
SELECT api.login('leo@example.org', 'pw-user-0123');
} . act_sql('ulf@example.org') . q{
SELECT api.logout();
} . act_sql(undef) . q{
SELECT api.update_user((SELECT id FROM booking.users WHERE email = 'leo@example.org'), active => false);
} . act_sql('fay@example.org') . q{
SELECT api.create_room('Aquarium', 'HQ 1st floor', 6, '{screen,whiteboard}');
SELECT api.create_room('Boardroom', 'HQ 5th floor', 20, '{screen,videoconf}', 15, 15);
SELECT api.create_room('Library', 'HQ 2nd floor', 4, '{whiteboard}', 0, 5);
SELECT api.create_room('Old annex', 'Annex', 8);
SELECT api.update_room((SELECT id FROM booking.rooms WHERE name = 'Library'), capacity => 5);
-- Staff may book in the past (a meeting recorded after the fact).
SELECT api.create_booking((SELECT id FROM booking.rooms WHERE name = 'Boardroom'), pg_temp.at(-2, '09:00'), pg_temp.at(-2, '10:00'), 'Budget review');
SELECT api.create_booking((SELECT id FROM booking.rooms WHERE name = 'Boardroom'), pg_temp.at(5, '09:00'), pg_temp.at(5, '12:00'), 'Facilities weekly',
                          '{"frequency": "weekly", "count": 3}');
} . act_sql('ada@example.org') . q{
SELECT api.create_booking((SELECT id FROM booking.rooms WHERE name = 'Aquarium'), pg_temp.at(-3, '09:00'), pg_temp.at(-3, '10:00'), 'Offsite debrief');
} . act_sql('uma@example.org') . q{
SELECT api.create_booking((SELECT id FROM booking.rooms WHERE name = 'Aquarium'), pg_temp.at(1, '09:00'), pg_temp.at(1, '10:00'), 'Standup');
SELECT api.create_booking((SELECT id FROM booking.rooms WHERE name = 'Boardroom'), pg_temp.at(2, '14:00'), pg_temp.at(2, '15:00'), 'Planning',
                          '{"frequency": "weekly", "count": 4}');
SELECT api.create_booking((SELECT id FROM booking.rooms WHERE name = 'Old annex'), pg_temp.at(3, '16:00'), pg_temp.at(3, '17:00'), 'Farewell');
SELECT api.update_booking((SELECT id FROM booking.bookings WHERE title = 'Standup'), pg_temp.at(1, '08:30'), pg_temp.at(1, '09:30'));
SELECT api.set_my_availability(jsonb_build_array(
    jsonb_build_object('starts_at', pg_temp.at(1, '08:00'), 'ends_at', pg_temp.at(1, '12:00')),
    jsonb_build_object('starts_at', pg_temp.at(2, '13:00'), 'ends_at', pg_temp.at(2, '17:00'))));
} . act_sql('ulf@example.org') . q{
SELECT api.create_booking((SELECT id FROM booking.rooms WHERE name = 'Aquarium'), pg_temp.at(1, '10:00'), pg_temp.at(1, '11:00'), 'One to one');
SELECT api.create_booking((SELECT id FROM booking.rooms WHERE name = 'Aquarium'), pg_temp.at(4, '10:00'), pg_temp.at(4, '11:00'), 'Cancelled later');
SELECT api.cancel_booking((SELECT id FROM booking.bookings WHERE title = 'Cancelled later'));
SELECT api.set_my_availability(jsonb_build_array(
    jsonb_build_object('starts_at', pg_temp.at(1, '09:00'), 'ends_at', pg_temp.at(1, '15:00'))));
} . act_sql('una@example.org') . q{
SELECT api.create_booking((SELECT id FROM booking.rooms WHERE name = 'Library'), pg_temp.at(3, '09:00'), pg_temp.at(3, '10:00'), 'Interview');
} . act_sql('ulf@example.org') . q{
-- A daily series that skips the occurrence the interview already holds.
SELECT api.create_booking((SELECT id FROM booking.rooms WHERE name = 'Library'), pg_temp.at(1, '09:00'), pg_temp.at(1, '09:30'), 'Reading hour',
                          '{"frequency": "daily", "count": 5, "on_conflict": "skip"}');
} . act_sql('fay@example.org') . q{
SELECT api.delete_room((SELECT id FROM booking.rooms WHERE name = 'Old annex'));
} . act_sql(undef) . q{
-- Meetings imported from the old system: users' past bookings, which they review.
INSERT INTO booking.bookings (room_id, user_id, title, starts_at, ends_at)
SELECT r.id, u.id, 'Imported ' || u.email, (current_date - 4 + time '13:00') AT TIME ZONE 'UTC' + n * interval '2 hours',
       (current_date - 4 + time '14:00') AT TIME ZONE 'UTC' + n * interval '2 hours'
  FROM booking.rooms r,
       (VALUES ('una@example.org', 0), ('mona@example.org', 1)) v(email, n)
  JOIN booking.users u ON u.email = v.email
 WHERE r.name = 'Library';

} . act_sql('ada@example.org') . q{
SELECT api.create_hotel('Seaside', 'Lisbon');
SELECT api.create_hotel('Alpine', 'Zermatt');
} . act_sql('fay@example.org') . q{
SELECT api.adjust_inventory((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'double', pg_temp.d(-5), pg_temp.d(30), total => 3);
SELECT api.adjust_inventory((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'suite', pg_temp.d(-5), pg_temp.d(30), total => 1);
SELECT api.adjust_inventory((SELECT id FROM booking.hotels WHERE name = 'Alpine'), 'single', pg_temp.d(0), pg_temp.d(20), total => 2);
SELECT api.adjust_inventory((SELECT id FROM booking.hotels WHERE name = 'Alpine'), 'single', pg_temp.d(10), pg_temp.d(12), delta => 1);
SELECT api.set_restrictions((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'double', pg_temp.d(10), pg_temp.d(12), min_stay => 2);
SELECT api.set_restrictions((SELECT id FROM booking.hotels WHERE name = 'Alpine'), 'single', pg_temp.d(15), pg_temp.d(15), closed_to_arrival => true);
-- Staff record stays that began in the past.
SELECT api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'double', 'Guest checked in', pg_temp.d(-1), 3);
SELECT api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'double', 'Guest leaving early', pg_temp.d(-2), 4, 2, 1);
SELECT api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'double', 'Guest departed', pg_temp.d(-3), 2);
SELECT api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'suite', 'Guest never came', pg_temp.d(-2), 3);
SELECT api.check_in((SELECT id FROM booking.reservations WHERE guest_name = 'Guest checked in'));
SELECT api.check_in((SELECT id FROM booking.reservations WHERE guest_name = 'Guest leaving early'));
SELECT api.check_in((SELECT id FROM booking.reservations WHERE guest_name = 'Guest departed'));
SELECT api.check_out((SELECT id FROM booking.reservations WHERE guest_name = 'Guest leaving early'));
} . act_sql('uma@example.org') . q{
SELECT api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'double', 'Uma U', pg_temp.d(3), 2, 2);
SELECT api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'suite', 'Uma U', pg_temp.d(1), 1);
SELECT api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'double', 'Uma U', pg_temp.d(10), 2);
} . act_sql('ulf@example.org') . q{
SELECT api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Seaside'), 'double', 'Ulf U', pg_temp.d(5), 3);
SELECT api.cancel_reservation((SELECT id FROM booking.reservations WHERE guest_name = 'Ulf U'));
} . act_sql('una@example.org') . q{
SELECT api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Alpine'), 'single', 'Una U', pg_temp.d(7), 2, 1, 2);
SELECT api.update_reservation((SELECT id FROM booking.reservations WHERE guest_name = 'Una U'), stay_length => 3);
} . act_sql('graf@example.org') . q{
SELECT api.create_reservation((SELECT id FROM booking.hotels WHERE name = 'Alpine'), 'single', 'Conference guest', pg_temp.d(11), 1);

} . act_sql('ada@example.org') . q{
-- The night audits of the last two days (no-shows released).
SET pg_booking.checkout_release_no_shows = on;
SELECT api.run_checkout(pg_temp.d(-2));
SELECT api.run_checkout(pg_temp.d(-1));
RESET pg_booking.checkout_release_no_shows;
SELECT api.create_review((SELECT id FROM booking.rooms WHERE name = 'Aquarium'), 4, 'Bright and quiet');
SELECT api.update_review((SELECT id FROM booking.reviews WHERE comment = 'Bright and quiet'), 3, 'Bright, a bit loud');
} . act_sql('fay@example.org') . q{
SELECT api.create_review((SELECT id FROM booking.rooms WHERE name = 'Boardroom'), 5, 'Great screen');
} . act_sql('una@example.org') . q{
SELECT api.create_review((SELECT id FROM booking.rooms WHERE name = 'Library'), 2, 'Too small for four');
} . act_sql('mona@example.org') . q{
SELECT api.create_review((SELECT id FROM booking.rooms WHERE name = 'Library'), 4);
} . act_sql('ulf@example.org') . q{
SELECT api.vote_review((SELECT id FROM booking.reviews WHERE comment = 'Bright, a bit loud'), true);
SELECT api.vote_review((SELECT id FROM booking.reviews WHERE comment = 'Great screen'), false);
SELECT api.flag_review((SELECT id FROM booking.reviews WHERE comment = 'Too small for four'), 'rude');
} . act_sql('uma@example.org') . q{
SELECT api.vote_review((SELECT id FROM booking.reviews WHERE comment = 'Bright, a bit loud'), false);
SELECT api.vote_review((SELECT id FROM booking.reviews WHERE comment = 'Too small for four'), true);
SELECT api.flag_review((SELECT id FROM booking.reviews WHERE comment = 'Great screen'), 'advertising');
} . act_sql('mona@example.org') . q{
SELECT api.hide_review((SELECT id FROM booking.reviews WHERE comment = 'Great screen'));
} . act_sql(undef);
	return $sql;
}

# Load the data into $db; dies (and so fails the test) on any error.  The
# database is settled afterwards: nothing changes it until the test does.
sub load_realistic_data
{
	my ($node, $db) = @_;
	my ($ret, $out, $err) = $node->psql($db, realistic_data_sql(),
		extra_params => [ '-v', 'ON_ERROR_STOP=1' ]);
	die "loading the realistic data failed: $err" if $ret != 0;
	settle_events($node, $db);
	return;
}

# Where events are queued and published by a background publisher
# (booking.publish_events), publish what is queued now, so the events table
# does not move under a comparison.  Nothing to do where events are written
# directly (1.0).
sub settle_events
{
	my ($node, $db) = @_;
	return unless $node->safe_psql($db, q{SELECT to_regproc('booking.publish_events') IS NOT NULL}) eq 't';
	for (1 .. 100)
	{
		return if $node->safe_psql($db, 'SELECT booking.publish_events()') == 0;
	}
	die 'events are still queued after 100 publishes';
}

# The self-join that finds two bookings occupying one room at once (none may
# exist), by the extension's own definition of which statuses occupy a room
# when it has one.
sub occupying_overlaps_sql
{
	my ($node, $db) = @_;
	my $occupies = $node->safe_psql($db, q{SELECT to_regprocedure('booking.status_occupies(text)') IS NOT NULL}) eq 't'
	  ? sub { "booking.status_occupies($_[0].status)" }
	  : sub { "$_[0].status IN ('confirmed', 'completed')" };
	return 'SELECT count(*) FROM booking.bookings a JOIN booking.bookings b'
	  . ' ON a.room_id = b.room_id AND a.id < b.id'
	  . ' AND tstzrange(a.starts_at, a.ends_at) && tstzrange(b.starts_at, b.ends_at)'
	  . ' WHERE ' . $occupies->('a') . ' AND ' . $occupies->('b');
}

# The tables of the extension (schema-qualified), by name.
sub extension_tables
{
	my ($node, $db) = @_;
	return split /\n/, $node->safe_psql($db, q{
SELECT c.oid::regclass::text FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e' AND c.relkind IN ('r', 'p')
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_booking')
 ORDER BY 1});
}

# table => its columns, in order, as a select list (to compare the same
# columns after an upgrade added some).
sub table_columns
{
	my ($node, $db) = @_;
	my %cols;
	for my $t (extension_tables($node, $db))
	{
		$cols{$t} = $node->safe_psql($db, qq{SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
		  FROM pg_attribute WHERE attrelid = '$t'::regclass AND attnum > 0 AND NOT attisdropped});
	}
	return \%cols;
}

# table => "rows md5" over every row as text, in a stable order (all columns,
# generated ones included, or those of $columns->{table}), for every table of
# the extension; sequence => "last_value is_called".
sub table_fingerprints
{
	my ($node, $db, $columns) = @_;
	my %fp;
	for my $t (extension_tables($node, $db))
	{
		next if $columns && !$columns->{$t};
		my $row = $columns ? "ROW($columns->{$t})" : 'x';
		$fp{$t} = $node->safe_psql($db, qq{
SET row_security = off;
SELECT count(*) || ' ' || md5(coalesce(string_agg(r::text, E'\\n' ORDER BY r::text), ''))
  FROM (SELECT $row AS r FROM $t x) y});
	}
	for my $s (split /\n/, $node->safe_psql($db, q{
SELECT c.oid::regclass::text FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
 WHERE d.classid = 'pg_class'::regclass AND d.deptype = 'e' AND c.relkind = 'S'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_booking') ORDER BY 1}))
	{
		$fp{$s} = $node->safe_psql($db, "SELECT last_value || ' ' || is_called FROM $s");
	}
	return \%fp;
}

# table => [every row as text, sorted], on the columns of $columns->{table}.
sub table_rows
{
	my ($node, $db, $columns) = @_;
	my %rows;
	for my $t (sort keys %$columns)
	{
		my $text = $node->safe_psql($db, qq{SET row_security = off;
SELECT string_agg(replace(r::text, E'\\n', '\\n'), E'\\n' ORDER BY r::text) FROM (SELECT ROW($columns->{$t}) AS r FROM $t x) y});
		$rows{$t} = [ split /\n/, $text ];
	}
	return \%rows;
}

# One line per object of the extension, with everything that defines it, so
# that two databases can be compared line by line (t/060_upgrade.pl).  Found
# through pg_depend (the extension's members, and the columns, constraints,
# indexes, triggers, policies and rules of its tables), never from a list.
sub extension_catalog
{
	my ($node, $db) = @_;
	return $node->safe_psql($db, q{
WITH ext AS (SELECT oid, extversion, extconfig, extcondition FROM pg_extension WHERE extname = 'pg_booking'),
members AS (
    SELECT d.classid, d.objid FROM pg_depend d, ext
     WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid AND d.deptype = 'e'),
rels AS (SELECT c.* FROM pg_class c JOIN members m ON m.classid = 'pg_class'::regclass AND m.objid = c.oid),
lines AS (
    -- Every member, with its comment.
    SELECT 'member ' || pg_describe_object(m.classid, m.objid, 0)
           || coalesce(' comment=' || quote_literal(obj_description(m.objid, m.classid::regclass::name)), '') AS l
      FROM members m
    UNION ALL
    -- Functions: the whole definition (body, volatility, security, settings) and grants.
    SELECT 'function ' || p.oid::regprocedure || ' ' || pg_get_functiondef(p.oid)
           || ' acl=' || coalesce(p.proacl::text, 'default')
      FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
     WHERE p.prokind IN ('f', 'p', 'w')
    UNION ALL
    SELECT 'aggregate ' || p.oid::regprocedure || ' acl=' || coalesce(p.proacl::text, 'default')
      FROM pg_proc p JOIN members m ON m.classid = 'pg_proc'::regclass AND m.objid = p.oid
     WHERE p.prokind = 'a'
    UNION ALL
    -- Relations: kind, options, row security, grants; views with their query.
    SELECT 'relation ' || c.oid::regclass || ' kind=' || c.relkind::text || ' persistence=' || c.relpersistence::text
           || ' rls=' || c.relrowsecurity || '/' || c.relforcerowsecurity
           || ' options=' || coalesce(c.reloptions::text, '') || ' acl=' || coalesce(c.relacl::text, 'default')
           || CASE WHEN c.relkind IN ('v', 'm') THEN ' query=' || pg_get_viewdef(c.oid) ELSE '' END
      FROM rels c
    UNION ALL
    -- Columns, in order, with type, default, nullability, identity, generation, grants, comment.
    SELECT 'column ' || a.attrelid::regclass || ' #' || a.attnum || ' ' || a.attname
           || ' ' || format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
           || ' dropped=' || a.attisdropped || ' identity=' || a.attidentity::text || ' generated=' || a.attgenerated::text
           || coalesce(' default=' || pg_get_expr(ad.adbin, ad.adrelid), '')
           || ' acl=' || coalesce(a.attacl::text, 'default')
           || coalesce(' comment=' || quote_literal(col_description(a.attrelid, a.attnum)), '')
      FROM pg_attribute a JOIN rels c ON c.oid = a.attrelid
      LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
     WHERE a.attnum > 0 AND NOT (a.attisdropped AND c.relkind <> 'r')
    UNION ALL
    SELECT 'constraint ' || con.conrelid::regclass || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid)
           || ' deferrable=' || con.condeferrable || '/' || con.condeferred
      FROM pg_constraint con JOIN rels c ON c.oid = con.conrelid
    UNION ALL
    SELECT 'constraint ' || con.contypid::regtype || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid)
      FROM pg_constraint con JOIN members m ON m.classid = 'pg_type'::regclass AND m.objid = con.contypid
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
           || coalesce(' comment=' || quote_literal(obj_description(i.indexrelid, 'pg_class')), '')
      FROM pg_index i JOIN rels c ON c.oid = i.indrelid
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text
      FROM pg_trigger t JOIN rels c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal
    UNION ALL
    SELECT 'policy ' || pol.polrelid::regclass || ' ' || pol.polname || ' cmd=' || pol.polcmd::text
           || ' permissive=' || pol.polpermissive
           || ' roles=' || (SELECT string_agg(CASE WHEN r = 0 THEN 'public' ELSE r::regrole::text END, ',' ORDER BY 1)
                              FROM unnest(pol.polroles) r)
           || ' using=' || coalesce(pg_get_expr(pol.polqual, pol.polrelid), '')
           || ' check=' || coalesce(pg_get_expr(pol.polwithcheck, pol.polrelid), '')
      FROM pg_policy pol JOIN rels c ON c.oid = pol.polrelid
    UNION ALL
    SELECT 'rule ' || pg_get_ruledef(r.oid)
      FROM pg_rewrite r JOIN rels c ON c.oid = r.ev_class WHERE r.rulename <> '_RETURN'
    UNION ALL
    SELECT 'sequence ' || s.seqrelid::regclass || ' ' || format_type(s.seqtypid, NULL) || ' start=' || s.seqstart
           || ' inc=' || s.seqincrement || ' min=' || s.seqmin || ' max=' || s.seqmax || ' cache=' || s.seqcache
           || ' cycle=' || s.seqcycle
      FROM pg_sequence s JOIN rels c ON c.oid = s.seqrelid
    UNION ALL
    SELECT 'type ' || t.oid::regtype || ' type=' || t.typtype::text || ' base=' || t.typbasetype::regtype
           || ' notnull=' || t.typnotnull || coalesce(' default=' || t.typdefault, '')
           || ' acl=' || coalesce(t.typacl::text, 'default')
           || coalesce(' labels=' || (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                         FROM pg_enum e WHERE e.enumtypid = t.oid), '')
      FROM pg_type t JOIN members m ON m.classid = 'pg_type'::regclass AND m.objid = t.oid
    UNION ALL
    -- Schemas the extension made or uses (grants on them live outside the members).
    SELECT 'schema ' || n.nspname || ' owner=' || n.nspowner::regrole || ' acl=' || coalesce(n.nspacl::text, 'default')
           || coalesce(' comment=' || quote_literal(obj_description(n.oid, 'pg_namespace')), '')
      FROM pg_namespace n WHERE n.nspname IN ('api', 'booking')
    UNION ALL
    -- What pg_dump keeps: the configuration tables and their filters.
    SELECT 'config ' || cfg.t::regclass || ' filter=' || quote_literal(coalesce(ext.extcondition[cfg.i], ''))
      FROM ext, unnest(ext.extconfig) WITH ORDINALITY cfg(t, i)
    UNION ALL
    SELECT 'version ' || extversion FROM ext
    UNION ALL
    SELECT 'event trigger ' || e.evtname || ' ' || e.evtevent || ' ' || e.evtfoid::regproc || ' ' || e.evtenabled::text
      FROM pg_event_trigger e JOIN members m ON m.classid = 'pg_event_trigger'::regclass AND m.objid = e.oid
)
-- One object per line: the newlines of function bodies and view queries as \n.
SELECT string_agg(replace(l, E'\n', '\n'), E'\n' ORDER BY l) FROM lines});
}

1;
