"""The demo harness, apart from the library: `shardmon demo`'s scenario (`scenario`), the demo
node it runs per shard (`python -m shardmon.demo`), a fleet of local node processes (`fleet`)
and the embedded Redis it falls back to (`embedded`). The tests and benchmarks use the last two.
"""
