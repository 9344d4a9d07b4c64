"""asv benchmark suites for hessbench (see ``asv.conf.json`` and the README, "Benchmarks")."""
