-- One booking of 1-3 h in one of 100 rooms, somewhere in 2099, through the
-- variant under test.  Clashes are expected and caught (see setup).
\set room random(1, 100)
\set hour random(0, :hours - 1)
\set minutes random(4, 12) * 15
SELECT bench_insert(:variant, :room, :hour, :minutes);
