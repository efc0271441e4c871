\set hotel random(1, 50)
\set type random(0, 1)
\set arrival random(0, 330)
\set len random(1, 5)
SELECT bench_reserve(:hotel, :type, :arrival, :len);
