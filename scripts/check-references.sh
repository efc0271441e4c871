#!/usr/bin/env bash
# Every file the README, docs/ and the sources' comments name exists in the
# repository: a path (with a slash) from the root or from the naming file's
# folder, a bare name (conflicts.c, design.md) somewhere in the tree.  Names
# that are not repository files (generated at run time, URL paths, a
# cluster's own files) are listed below.  The frozen 1.0 script is left out:
# it cannot change (its "API.md" is docs/api.md).
set -euo pipefail
cd "$(dirname "$0")/.."
exec perl -e '
use strict; use warnings; use File::Find;
my %not_ours = map { $_ => 1 } qw(openapi.json postgresql.conf secrets.conf burst.sql name.sql
    extension/pg_booking--1.1.sql extension/pg_booking.control pg_booking--1.1--1.2.sql);
my (%base, @files);
find({ no_chdir => 1, wanted => sub {
    $File::Find::prune = 1 if m{/(\.git|node_modules|tmp_check|tmp_regress|results|\.run|\.test-results)$};
    return unless -f; (my $p = $_) =~ s{^\./}{}; $base{ (split m{/}, $p)[-1] } = 1;
    push @files, $p if $p ne "scripts/check-references.sh" && $p =~ m{^(README\.md|docs/.*\.md|adapter/.*\.[ch]|extension/.*\.[ch]|extension/pg_booking--1\.0--.*\.sql|scripts/.*|sql/.*\.sql|t/.*\.p[lm]|adapter/t/.*\.p[lm]|test/node/.*\.mjs|Makefile|adapter/Makefile)$};
} }, ".");
my $bad = 0;
for my $f (sort @files) {
    open my $fh, "<", $f or die; my $dir = $f =~ m{^(.*)/} ? $1 : ".";
    while (my $line = <$fh>) {
        next if $line =~ /^\s*#\s*include/;
        while ($line =~ m#(?<![\w\$/\{.\@-])((?:\.\./)?[\w.-]+(?:/[\w.-]+)*\.(?:md|sql|c|h|pl|pm|sh|json|yaml|mjs|lua))\b#g) {
            my $ref = $1;
            next if $not_ours{$ref} || $ref =~ /A--B|NN_|^tmp|^\.|example\.com/;
            # adapter/t/... is also named from the adapter folder (ADAPTER_PROVE_TESTS).
            my $ok = $ref =~ m{/} ? (-e $ref || -e "$dir/$ref" || -e "adapter/$ref") : $base{$ref};
            print "$f:$.: names $ref, which is not in the repository\n" and $bad = 1 unless $ok;
        }
    }
}
exit $bad;
'
