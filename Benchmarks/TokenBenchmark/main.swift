// The token benchmark; see Benchmarks/README.md.
print("not written yet")
